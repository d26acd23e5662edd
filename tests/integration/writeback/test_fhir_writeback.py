"""Write-back to the real FHIR server and PostgreSQL: exactly once, races, rescoring, faults.

The FHIR server is HAPI FHIR JPA (the reference server; referential integrity on write, so
each test first loads the patients, encounters and source data its scores point at); faults
come from the fault-injecting proxy in front of it; the store is a fresh PostgreSQL database
migrated with Alembic. Exactly-once across processes (``kill -9``) is in
``test_writeback_crash.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from dipro_fhir.core.scores import Score
from dipro_fhir.core.timeline import PatientId, RunId
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.resources import validate_resource
from dipro_fhir.fhir.retry import RetryPolicy
from dipro_fhir.store import ResultStore
from dipro_fhir.writeback import codes
from dipro_fhir.writeback.assessment import AssessmentOptions
from dipro_fhir.writeback.sinks import FhirResultSink
from dipro_fhir.writeback.write import publish_chunk, write_scores
from tests.integration.writeback.sources import load_sources, provenance_count_per_target
from tests.servers.fault_proxy import FaultProxy
from tests.unit.writeback.scores import AS_OF, MODEL, cohort_scores

pytestmark = pytest.mark.integration
N_PATIENTS = 5
N_ASSESSMENTS = 3 * N_PATIENTS
N_ROWS = 26 * N_PATIENTS
OPTIONS = AssessmentOptions(transaction_size=4)


@pytest.fixture
def client(seeded_base_url: str) -> Iterator[FhirClient]:
    """A client of the emptied FHIR server, holding the sources of ``N_PATIENTS``."""
    with FhirClient(seeded_base_url) as fhir:
        yield fhir


@pytest.fixture
def seeded_base_url(fhir_base_url: str) -> str:
    """The emptied FHIR server, holding what the scores of ``N_PATIENTS`` refer to."""
    with FhirClient(fhir_base_url) as fhir:
        load_sources(fhir, cohort_scores(N_PATIENTS))
    return fhir_base_url


@pytest.fixture
def store(migrated_pg_url: str) -> Iterator[ResultStore]:
    """A store on a fresh, migrated PostgreSQL database, with run ``run-1`` started."""
    engine = sa.create_engine(migrated_pg_url)
    result = ResultStore(engine)
    result.start_run(RunId("run-1"), as_of=AS_OF, model_name="dipro", model_version="1.0.0")
    yield result
    engine.dispose()


def _assessments(client: FhirClient) -> list[dict[str, Any]]:
    return list(client.search("RiskAssessment", {"_count": "500"}))


def _per_identifier(client: FhirClient) -> Counter[str]:
    return Counter(
        i["value"]
        for ra in _assessments(client)
        for i in ra["identifier"]
        if i["system"] == codes.ASSESSMENT_ID_SYSTEM
    )


def _versions(client: FhirClient) -> dict[str, str]:
    return {ra["id"]: ra["meta"]["versionId"] for ra in _assessments(client)}


def _score_rows(store: ResultStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM scores")).scalar_one())


def test_rerun_of_same_night_writes_nothing_new(
    client: FhirClient, store: ResultStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dipro_fhir")
    scores = cohort_scores(N_PATIENTS)
    sink = FhirResultSink(client)
    first, _ = publish_chunk(sink, store, RunId("run-1"), scores, MODEL, options=OPTIONS)
    assert (first.written, first.unchanged, first.failures) == (N_ASSESSMENTS, 0, ())
    versions = _versions(client)
    store.start_run(RunId("run-2"), as_of=AS_OF, model_name="dipro", model_version="1.0.0")
    again, _ = publish_chunk(sink, store, RunId("run-2"), scores, MODEL, options=OPTIONS)
    assert (again.written, again.unchanged) == (0, N_ASSESSMENTS)
    assert _versions(client) == versions
    assert set(versions.values()) == {"1"}
    assert set(_per_identifier(client).values()) == {1}
    assert len(list(client.search("Provenance", {}))) == 4  # 15 assessments / 4 per bundle
    assert _score_rows(store) == N_ROWS
    stored = {(r.patient_id, r.task): r.fhir_resource_id for r in store.scores()}
    assert stored == dict(first.resource_ids)
    assert "pat-" not in caplog.text  # no patient ids in logs


@pytest.mark.parametrize(
    "run_ids", [("night", "night"), ("run-0", "run-1")], ids=["same-night", "two-run-ids"]
)
def test_two_concurrent_runs_leave_no_duplicates(
    seeded_base_url: str, migrated_pg_url: str, run_ids: tuple[str, str]
) -> None:
    scores = cohort_scores(N_PATIENTS)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(run_id: str) -> None:
        engine = sa.create_engine(migrated_pg_url)
        try:
            store = ResultStore(engine)
            mine = [dataclasses.replace(s, run_id=RunId(run_id)) for s in scores]
            with FhirClient(seeded_base_url) as fhir:
                barrier.wait(timeout=30)
                publish_chunk(FhirResultSink(fhir), store, RunId(run_id), mine, MODEL)
        except BaseException as exc:  # collected and re-raised by the test thread
            errors.append(exc)
        finally:
            engine.dispose()

    starter = sa.create_engine(migrated_pg_url)
    for run_id in set(run_ids):
        ResultStore(starter).start_run(
            RunId(run_id), as_of=AS_OF, model_name="dipro", model_version="1.0.0"
        )
    starter.dispose()
    threads = [threading.Thread(target=run, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with FhirClient(seeded_base_url) as fhir:
        per_identifier = _per_identifier(fhir)
        per_target = provenance_count_per_target(fhir)
    assert len(per_identifier) == N_ASSESSMENTS
    assert set(per_identifier.values()) == {1}
    # Runs with their own run ids may each record a Provenance of what they found or wrote:
    # every RiskAssessment has at least one, and at most one per run id.
    assert len(per_target) == N_ASSESSMENTS
    assert set(per_target.values()) <= ({1} if run_ids[0] == run_ids[1] else {1, 2})
    engine = sa.create_engine(migrated_pg_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT (patient_id, task, outcome)) FROM scores")
        ).one()
    engine.dispose()
    assert tuple(rows) == (N_ROWS, N_ROWS)
    print(
        f"two concurrent runs {run_ids} on the FHIR server: RiskAssessments/identifier "
        f"{set(per_identifier.values())}, Provenances/RiskAssessment {set(per_target.values())}, "
        f"rows {rows[0]} for {N_PATIENTS} patients"
    )


def test_rescoring_with_new_model_version_creates_new_and_keeps_old(
    client: FhirClient, store: ResultStore
) -> None:
    sink = FhirResultSink(client)
    publish_chunk(sink, store, RunId("run-1"), cohort_scores(N_PATIENTS), MODEL)
    old = {ra["id"]: ra for ra in _assessments(client)}
    v2 = dataclasses.replace(MODEL, version="2.0.0")
    store.start_run(RunId("run-v2"), as_of=AS_OF, model_name="dipro", model_version="2.0.0")
    report, _ = publish_chunk(
        sink, store, RunId("run-v2"), cohort_scores(N_PATIENTS, model=v2, run_id="run-v2"), v2
    )
    assert report.written == N_ASSESSMENTS
    now = {ra["id"]: ra for ra in _assessments(client)}
    assert len(now) == 2 * N_ASSESSMENTS
    assert all(now[k] == v for k, v in old.items())  # same versionId, same content
    assert len(list(client.search("Device", {}))) == 2
    assert _score_rows(store) == 2 * N_ROWS


def test_rejected_entry_fails_only_its_patient(
    seeded_base_url: str,
    fault_proxy: Callable[[str], FaultProxy],
    store: ResultStore,
) -> None:
    fhir_base_url = seeded_base_url
    scores = cohort_scores(3)
    victim = [s for s in scores if s.patient_id == "pat-0001" and s.task == "mortality"]
    victim_id = codes.assessment_id("1.0.0", "mortality", "pat-0001", AS_OF)
    proxy = fault_proxy(fhir_base_url)
    # POSTs to the base: batch reads of the model card and the Device (each written by a
    # plain PUT), batch read of the assessments, then their transaction: that one is
    # refused whole, and then the per-entry PUT of one assessment is refused.
    proxy.inject("status", times=1, match=r"/fhir/?$", method="POST", skip=3, status=400)
    proxy.inject("status", times=1, match=f"/RiskAssessment/{victim_id}$", method="PUT", status=422)
    literal_only = AssessmentOptions(identifier_fallback=False)
    with FhirClient(proxy.base_url) as fhir:
        report, _ = publish_chunk(
            FhirResultSink(fhir), store, RunId("run-1"), scores, MODEL, options=literal_only
        )
    assert [(f.patient_id, f.stage, f.reason) for f in report.failures] == [
        (PatientId("pat-0001"), "writeback", "rejected")
    ]
    assert report.written == 8
    assert victim
    assert (PatientId("pat-0001"), "mortality") not in report.resource_ids
    assert [f.patient_id for f in store.failures(RunId("run-1"))] == ["pat-0001"]
    # The refused RiskAssessment's score is not stored; the patient's delivered ones are.
    stored = {(s.patient_id, s.task, s.fhir_resource_id) for s in store.scores()}
    assert not {(p, t) for p, t, _ in stored} & {(PatientId("pat-0001"), "mortality")}
    assert (PatientId("pat-0001"), "los") in {(p, t) for p, t, _ in stored}
    assert all(rid is not None for _, _, rid in stored)
    assert proxy.count(path=f"/RiskAssessment/{victim_id}$", method="PUT") == 1
    with FhirClient(fhir_base_url) as fhir:
        (provenance,) = fhir.search("Provenance", {})
    assert f"RiskAssessment/{victim_id}" not in {t["reference"] for t in provenance["target"]}
    assert len(provenance["target"]) == 8
    with FhirClient(fhir_base_url) as fhir:
        held = {ra["id"] for ra in _assessments(fhir)}
        assert victim_id not in held
        assert len(held) == 8
        retry = write_scores(FhirResultSink(fhir), scores, MODEL)
    assert (retry.written, retry.unchanged, retry.failures) == (1, 8, ())


def test_crash_between_fhir_write_and_db_commit_then_rerun_completes(
    client: FhirClient, migrated_pg_url: str
) -> None:
    scores = cohort_scores(N_PATIENTS)
    crashing = sa.create_engine(migrated_pg_url)
    store = ResultStore(crashing)
    store.start_run(RunId("run-1"), as_of=AS_OF, model_name="dipro", model_version="1.0.0")

    def crash(conn: sa.Connection) -> None:
        raise RuntimeError("worker killed before the chunk's commit")

    sa.event.listen(crashing, "commit", crash)
    with pytest.raises(RuntimeError, match="killed"):
        publish_chunk(FhirResultSink(client), store, RunId("run-1"), scores, MODEL)
    crashing.dispose()
    assert len(_assessments(client)) == N_ASSESSMENTS
    engine = sa.create_engine(migrated_pg_url)
    fresh = ResultStore(engine)
    assert fresh.scores() == []
    report, _ = publish_chunk(FhirResultSink(client), fresh, RunId("run-1"), scores, MODEL)
    assert (report.written, report.unchanged) == (0, N_ASSESSMENTS)
    rows = fresh.scores()
    engine.dispose()
    assert len(rows) == N_ROWS
    assert {(r.patient_id, r.task): r.fhir_resource_id for r in rows} == dict(report.resource_ids)
    assert set(_per_identifier(client).values()) == {1}
    assert set(_versions(client).values()) == {"1"}


def test_assessments_read_back_by_subject_and_identifier_and_validate(
    client: FhirClient,
) -> None:
    scores: list[Score] = cohort_scores(2)
    write_scores(FhirResultSink(client), scores, MODEL)
    by_subject = list(client.search("RiskAssessment", {"subject": "Patient/pat-0001"}))
    assert sorted(ra["code"]["coding"][0]["code"] for ra in by_subject) == [
        "los",
        "mortality",
        "progression",
    ]
    key = codes.assessment_key("1.0.0", "los", "pat-0001", AS_OF)
    (by_identifier,) = client.search(
        "RiskAssessment", {"identifier": f"{codes.ASSESSMENT_ID_SYSTEM}|{key}"}
    )
    assert by_identifier["subject"] == {"reference": "Patient/pat-0001"}
    for ra in by_subject:
        validate_resource(ra)
        assert codes.AI_LABEL_CODE in {s["code"] for s in ra["meta"]["security"]}
        assert all(0 <= p["probabilityDecimal"] <= 100 for p in ra["prediction"])  # ras-2
    assert len(list(client.search("Device", {}))) == 1


def test_server_outage_after_retries_fails_patients_as_retriable(
    seeded_base_url: str,
    fault_proxy: Callable[[str], FaultProxy],
    store: ResultStore,
) -> None:
    fhir_base_url = seeded_base_url
    scores = cohort_scores(2)
    proxy = fault_proxy(fhir_base_url)
    # The batch reads of the model card, the Device and the assessments pass; then the
    # server is down.
    proxy.inject("503", times=1000, match=r"/fhir/?$", method="POST", skip=3)
    fast = RetryPolicy(max_attempts=2, backoff_s=0.01, max_backoff_s=0.01, jitter=0.0)
    with FhirClient(proxy.base_url, retry=fast) as fhir:
        report, _ = publish_chunk(FhirResultSink(fhir), store, RunId("run-1"), scores, MODEL)
    assert sorted((f.patient_id, f.reason, f.retriable) for f in report.failures) == [
        (PatientId("pat-0000"), "source-unavailable", True),
        (PatientId("pat-0001"), "source-unavailable", True),
    ]
    assert report.resource_ids == {}
    rows = store.scores()
    assert len(rows) == 52  # scores kept, without FHIR ids, for the re-run to complete
    assert {r.fhir_resource_id for r in rows} == {None}
    with FhirClient(fhir_base_url) as fhir:
        retry, _ = publish_chunk(FhirResultSink(fhir), store, RunId("run-1"), scores, MODEL)
    assert (retry.written, retry.failures) == (6, ())
    assert None not in {r.fhir_resource_id for r in store.scores()}


def test_refused_provenance_is_recorded_partial_and_the_rerun_completes_it(
    seeded_base_url: str,
    fault_proxy: Callable[[str], FaultProxy],
    store: ResultStore,
) -> None:
    scores = cohort_scores(2)
    proxy = fault_proxy(seeded_base_url)
    proxy.inject("status", times=1000, match=r"/Provenance/", method="PUT", status=422)
    with FhirClient(proxy.base_url) as fhir:
        report, _ = publish_chunk(FhirResultSink(fhir), store, RunId("run-1"), scores, MODEL)
    assert report.written == 6
    assert sorted((f.patient_id, f.reason, f.retriable) for f in report.failures) == [
        (PatientId("pat-0000"), "provenance-missing", True),
        (PatientId("pat-0001"), "provenance-missing", True),
    ]
    assert {f.reason for f in store.failures(RunId("run-1"))} == {"provenance-missing"}
    with FhirClient(seeded_base_url) as fhir:
        assert provenance_count_per_target(fhir) == {}
        versions = _versions(fhir)
        retry, _ = publish_chunk(FhirResultSink(fhir), store, RunId("run-1"), scores, MODEL)
        per_target = provenance_count_per_target(fhir)
        assert _versions(fhir) == versions  # the assessments were not written again
    assert (retry.written, retry.unchanged, retry.failures) == (0, 6, ())
    assert sorted(per_target) == sorted(f"RiskAssessment/{i}" for i in versions)
    assert set(per_target.values()) == {1}


def test_data_from_elsewhere_is_referenced_by_identifier_and_hapi_accepts_it(
    fhir_base_url: str, store: ResultStore
) -> None:
    # Scores of data read from files: the write server holds the patients and encounters
    # but not the Observations and ImagingStudies (source_references "auto" -> identifier).
    scores = cohort_scores(2)
    by_identifier = AssessmentOptions(source_references="identifier")
    with FhirClient(fhir_base_url) as fhir:
        load_sources(fhir, scores, with_basis=False)
        report, _ = publish_chunk(
            FhirResultSink(fhir), store, RunId("run-1"), scores, MODEL, options=by_identifier
        )
        assessments = _assessments(fhir)
        (provenance,) = fhir.search("Provenance", {})
        again = write_scores(FhirResultSink(fhir), scores, MODEL, by_identifier)
    assert (report.written, report.failures) == (6, ())
    basis = [ref for ra in assessments for ref in ra["basis"]]
    assert basis
    assert all("reference" not in ref for ref in basis)
    assert {ref["identifier"]["system"] for ref in basis} == {"urn:ietf:rfc:3986"}
    assert {ref["type"] for ref in basis} == {"ImagingStudy", "Observation"}
    assert all(ref["display"] == ref["identifier"]["value"] for ref in basis)  # no base URL
    entities = [e["what"] for e in provenance["entity"] if e["role"] == "source"]
    assert entities
    assert all("identifier" in what and "reference" not in what for what in entities)
    # The model card (AI Transparency) is on the server written to: a literal reference.
    cards = [e["what"] for e in provenance["entity"] if e["role"] == "derivation"]
    assert [c["reference"].split("/")[0] for c in cards] == ["DocumentReference"]
    assert len(provenance["target"]) == 6
    assert (again.written, again.unchanged, again.failures) == (0, 6, ())


def test_source_data_deleted_since_extraction_still_gets_a_provenance(
    fhir_base_url: str, store: ResultStore
) -> None:
    # Literal references to resources the server no longer holds: HAPI accepts them in
    # RiskAssessment.basis (not a search-indexed path) but refuses them in
    # Provenance.entity (HAPI-1094); the Provenance is written again with identifiers.
    scores = cohort_scores(2)
    with FhirClient(fhir_base_url) as fhir:
        load_sources(fhir, scores, with_basis=False)
        report, _ = publish_chunk(FhirResultSink(fhir), store, RunId("run-1"), scores, MODEL)
        (provenance,) = fhir.search("Provenance", {})
        again = write_scores(FhirResultSink(fhir), scores, MODEL)
    assert (report.written, report.failures) == (6, ())
    assert len(provenance["target"]) == 6
    sources = [e["what"] for e in provenance["entity"] if e["role"] == "source"]
    assert sources
    assert all("identifier" in what for what in sources)
    assert (again.written, again.unchanged, again.failures) == (0, 6, ())


def test_a_lost_answer_to_an_applied_transaction_is_read_back_not_resent(
    seeded_base_url: str,
    fault_proxy: Callable[[str], FaultProxy],
    store: ResultStore,
) -> None:
    scores = cohort_scores(2)
    proxy = fault_proxy(seeded_base_url)
    # The Device's, the model card's and the assessments' batch reads pass; the transaction
    # of the assessments reaches the server, which applies it, but its answer is cut short.
    proxy.inject("truncate", times=1, match=r"/fhir/?$", method="POST", skip=3)
    with FhirClient(proxy.base_url) as fhir:
        report, _ = publish_chunk(FhirResultSink(fhir), store, RunId("run-1"), scores, MODEL)
    assert report.failures == ()
    posts = [(r.body_type, r.fault) for r in proxy.requests if r.method == "POST"]
    # batch reads, the cut transaction, one batch read back (no second transaction of the
    # assessments), then the Provenance's.
    assert posts[:5] == [
        ("batch", None),
        ("batch", None),
        ("batch", None),
        ("transaction", "truncate"),
        ("batch", None),
    ]
    with FhirClient(seeded_base_url) as fhir:
        assert set(_versions(fhir).values()) == {"1"}  # no needless version
    print(f"lost answer: {len(posts)} POSTs, versions all 1")
