"""Truncated and malformed answers of both servers cost no patient (HAPI, Orthanc, PostgreSQL).

Client level: a body cut short of its length and a 200 with a garbled body are retried, on
FHIR and on DICOMweb; ids are checked and URL-escaped before any request. Run level: a whole
scoring run (:func:`run_locally`, the CLI's path) through fault proxies in front of HAPI and
Orthanc that cut or garble a share of the answers scores every patient, with the same
scores as a run without faults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from dipro_fhir.core.errors import SourceUnavailable
from dipro_fhir.core.limits import InputLimitExceeded
from dipro_fhir.dicomweb.client import DicomWebClient
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.retry import RetryPolicy
from tests.checkpoints import write_tiny_checkpoint
from tests.servers.orthanc import OrthancServer

pytestmark = pytest.mark.integration
FAST = RetryPolicy(max_attempts=4, backoff_s=0.01, max_backoff_s=0.05, jitter=0.0)
START = datetime(2026, 10, 1, tzinfo=UTC)
REFERENCE = datetime(2026, 10, 20, tzinfo=UTC)
N_PATIENTS = 12


@pytest.fixture(scope="module")
def loaded(fhir_server: Any, orthanc: OrthancServer) -> Iterator[tuple[str, str, list[Any]]]:
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import load_into_servers

    fhir_server.reset()
    orthanc.reset()
    patients = list(
        generate_cohort(N_PATIENTS, seed=3, start=START, reference_time=REFERENCE, id_prefix="flt")
    )
    with FhirClient(fhir_server.base_url) as client:
        load_into_servers(patients, client, orthanc.dicomweb_url, image_size=(96, 96))
    yield fhir_server.base_url, orthanc.base_url, [p.truth for p in patients]
    fhir_server.reset()
    orthanc.reset()


def test_fhir_malformed_200_is_retried_and_ids_are_checked(
    loaded: tuple[str, str, list[Any]], fault_proxy: Callable[..., Any]
) -> None:
    base_url, _, truths = loaded
    proxy = fault_proxy(base_url)
    patient = truths[0].patient_id
    proxy.inject("malformed", times=2, match=f"/Patient/{patient}")
    with FhirClient(proxy.base_url, retry=FAST) as client:
        assert client.read("Patient", patient)["id"] == patient
        reads = [r.fault for r in proxy.requests if r.path.endswith(f"/Patient/{patient}")]
        assert reads == ["malformed", "malformed", None]
        proxy.inject("malformed", times=10, match=f"/Patient/{patient}")
        with pytest.raises(SourceUnavailable, match="not a JSON object"):
            client.read("Patient", patient)
        before = len(proxy.requests)
        for bad in ("../metadata", "a" * 65, "x y", "..", "a/b"):
            with pytest.raises(InputLimitExceeded):
                client.read("Patient", bad)
        assert len(proxy.requests) == before  # nothing was sent


@pytest.mark.parametrize("kind", ["truncate", "malformed"])
def test_dicomweb_cut_and_garbled_answers_are_retried(
    loaded: tuple[str, str, list[Any]], fault_proxy: Callable[..., Any], kind: str
) -> None:
    _, orthanc_url, truths = loaded
    proxy = fault_proxy(orthanc_url)
    image = truths[0].images[0]
    client = DicomWebClient(proxy.base_url + "/dicom-web", retry=FAST)
    proxy.inject(kind, times=2, match=r"/series$|/series\?")
    assert client.search_series(study_uid=image.study_uid)
    proxy.inject(kind, times=2, match=r"/instances/[^/]+$")
    ds = client.retrieve_instance(image.study_uid, image.series_uid, image.instance_uid)
    assert str(ds.SOPInstanceUID) == image.instance_uid
    faults = [r.fault for r in proxy.requests if r.fault]
    assert faults == [kind] * 4


def _settings(work: Path, fhir_url: str, dicomweb_url: str, store_url: str) -> Any:
    from dipro_fhir.core.settings import (
        DicomWebSettings,
        FhirSettings,
        ModelSettings,
        RunSettings,
        Settings,
        StoreSettings,
        WriteBackSettings,
    )

    return Settings(
        fhir=FhirSettings(base_url=fhir_url, page_size=100, max_retries=6),
        dicomweb=DicomWebSettings(base_url=dicomweb_url, max_retries=6),
        store=StoreSettings(url=SecretStr(store_url)),
        model=ModelSettings(checkpoint=work.parent / "checkpoint"),
        writeback=WriteBackSettings(target="ndjson", ndjson_dir=work / "results"),
        run=RunSettings(
            staging_dir=str(work / "staging"),
            chunk_size=4,
            availability="issued",
            log_salt=SecretStr("fault-test"),
        ),
    )


def _scores(url: str) -> dict[tuple[str, str, str], float]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT patient_id, task, outcome, probability FROM scores"))
        found = {(p, t, o): v for p, t, o, v in rows}
    engine.dispose()
    return found


@pytest.mark.slow
def test_a_run_through_cutting_and_garbling_proxies_loses_no_patient(
    loaded: tuple[str, str, list[Any]],
    fault_proxy: Callable[..., Any],
    migrated_pg_url: str,
    tmp_path: Path,
) -> None:
    from dipro_fhir.run.pipeline import RunRequest, run_locally
    from dipro_fhir.store.migrate import upgrade_database

    base_url, orthanc_url, truths = loaded
    write_tiny_checkpoint(tmp_path / "checkpoint", name="faults", version="1")
    as_of = REFERENCE - (REFERENCE - START) / 3
    request = RunRequest(
        as_of=as_of, dag_run_id="faults", patient_ids=tuple(t.patient_id for t in truths)
    )
    clean_db = migrated_pg_url
    clean = run_locally(
        _settings(tmp_path / "clean", base_url, orthanc_url + "/dicom-web", clean_db), request
    )
    # A patient with nothing in its window yet is not scored (no-usable-data), nothing else.
    unusable = clean["failure_reasons"].get("no-usable-data", 0)
    assert set(clean["failure_reasons"]) <= {"no-usable-data"}
    assert clean["scored"] == N_PATIENTS - unusable >= N_PATIENTS - 2

    fhir, pacs = fault_proxy(base_url), fault_proxy(orthanc_url)
    fhir.inject("truncate", times=10_000, method="GET", every=5)
    fhir.inject("malformed", times=10_000, method="GET", every=7)
    pacs.inject("truncate", times=10_000, method="GET", every=4)
    pacs.inject("malformed", times=10_000, method="GET", every=6)
    faulty_db = clean_db + "_faults"
    from tests.servers.postgres import admin

    server = _pg_server_of(clean_db)
    admin(server, f'CREATE DATABASE "{faulty_db.rsplit("/", 1)[1]}"')
    try:
        upgrade_database(faulty_db)
        work = tmp_path / "faulty"
        summary = run_locally(
            _settings(work, fhir.base_url, pacs.base_url + "/dicom-web", faulty_db), request
        )
        injected = sum(1 for p in (fhir, pacs) for r in p.requests if r.fault)
        assert injected > 20, "the proxies broke too few answers to mean anything"
        assert summary["failure_reasons"] == clean["failure_reasons"]
        assert summary["scored"] == clean["scored"]
        assert _scores(faulty_db) == _scores(clean_db)
        print(f"fault run: {injected} answers cut or garbled, {summary['scored']} scored, 0 lost")
    finally:
        admin(server, f'DROP DATABASE IF EXISTS "{faulty_db.rsplit("/", 1)[1]}" WITH (FORCE)')


def test_a_paging_loop_is_the_servers_data_problem_of_one_patient_not_an_outage(
    loaded: tuple[str, str, list[Any]],
    fault_proxy: Callable[..., Any],
    migrated_pg_url: str,
    tmp_path: Path,
) -> None:
    from dipro_fhir.core.errors import ServerProtocolError
    from dipro_fhir.run.pipeline import RunRequest, run_locally

    base_url, orthanc_url, truths = loaded
    victim = truths[2].patient_id
    fhir = fault_proxy(base_url)
    # Every Observation search of one patient answers with a next link to itself.
    fhir.inject("self-next", times=10_000, method="GET", match=rf"/Observation\?.*{victim}\b")
    with (
        FhirClient(fhir.base_url, retry=FAST) as client,
        pytest.raises(ServerProtocolError, match="paging loop"),
    ):
        list(client.search("Observation", {"subject": f"Patient/{victim}"}))
    assert fhir.count(path=r"/Observation") == 2  # the page, then its own link once: no retries

    write_tiny_checkpoint(tmp_path / "checkpoint", name="loop", version="1")
    request = RunRequest(
        as_of=REFERENCE - (REFERENCE - START) / 3,
        dag_run_id="loop",
        patient_ids=tuple(t.patient_id for t in truths),
    )
    settings = _settings(
        tmp_path / "run", fhir.base_url, orthanc_url + "/dicom-web", migrated_pg_url
    )
    summary = run_locally(settings, request)
    reasons = {k: v for k, v in summary["failure_reasons"].items() if k != "no-usable-data"}
    assert reasons == {"server-protocol": 1}
    # Batched searches by default (HAPI's CapabilityStatement lists them); the victim's
    # chunk, whose batched Observation search looped too, fell back to per-patient searches.
    assert summary["per_patient_search_chunks"] == 1
    assert summary["batched_search_chunks"] == summary["chunks"] - 1 >= 1
    assert summary["failure_classes"].get("retriable", 0) == 0
    import sqlalchemy as sa

    engine = sa.create_engine(migrated_pg_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT patient_id, reason_class, detail FROM patient_failures "
                "WHERE reason = 'server-protocol'"
            )
        ).all()
    engine.dispose()
    assert [(r[0], r[1]) for r in rows] == [(victim, "data")]
    assert "paging loop" in rows[0][2]


def _pg_server_of(url: str) -> Any:
    """The PgServer-like object ``admin`` needs, from a database URL of that server."""

    class _Server:
        def url(self, database: str = "postgres") -> str:
            return url.rsplit("/", 1)[0] + f"/{database}"

    return _Server()
