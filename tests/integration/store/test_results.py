"""ResultStore on real PostgreSQL (and SQLite for the demo): idempotent, atomic chunks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.timeline import MappingIssue, PatientId, RunId
from dipro_fhir.store import ResultStore, upgrade_database
from tests.unit.writeback.scores import AS_OF, cohort_scores

pytestmark = pytest.mark.integration
RUN = RunId("run-1")


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultStore]:
    """A migrated, empty store on PostgreSQL and on SQLite."""
    if request.param == "postgresql":
        url = request.getfixturevalue("migrated_pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'results.sqlite'}"
        upgrade_database(url)
    engine = sa.create_engine(url)
    result = ResultStore(engine)
    result.start_run(RUN, as_of=AS_OF, model_name="dipro", model_version="1.0.0")
    yield result
    engine.dispose()


def _count(store: ResultStore, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_recording_a_chunk_twice_changes_nothing(store: ResultStore) -> None:
    scores = cohort_scores(3)
    failures = [PatientFailure(PatientId("pat-9"), "extract", "source-unavailable", "503", True)]
    issues = {PatientId("pat-0000"): [MappingIssue("unknown-unit", "Observation/x", "mg")]}
    store.record_chunk(RUN, scores, failures, issues)
    first = store.scores()
    store.record_chunk(RUN, scores, failures, issues)
    assert store.scores() == first
    assert len(first) == 3 * 26
    assert (_count(store, "patient_failures"), _count(store, "data_problems")) == (1, 1)
    assert first[0].as_of == AS_OF
    assert first[0].risk_level in {"low", "moderate", "high"}


def test_rerun_fills_in_missing_rows_and_fhir_ids(store: ResultStore) -> None:
    scores = cohort_scores(4)
    store.record_chunk(RUN, scores[:30])
    ids = {(s.patient_id, s.task): f"ra-{s.patient_id}-{s.task}" for s in scores}
    store.record_chunk(RUN, scores, fhir_ids=ids)
    rows = store.scores()
    assert len(rows) == len(scores)
    assert all(r.fhir_resource_id == f"ra-{r.patient_id}-{r.task}" for r in rows)
    store.record_chunk(RUN, scores)  # a later write without ids keeps them
    assert all(r.fhir_resource_id is not None for r in store.scores())


def test_crash_inside_a_chunk_leaves_no_partial_chunk(store: ResultStore) -> None:
    scores = cohort_scores(2)

    def crash(conn: sa.Connection) -> None:
        raise RuntimeError("injected crash before commit")

    sa.event.listen(store.engine, "commit", crash)
    with pytest.raises(RuntimeError, match="injected"):
        store.record_chunk(RUN, scores, [PatientFailure(PatientId("x"), "map", "bad")])
    sa.event.remove(store.engine, "commit", crash)
    assert (_count(store, "scores"), _count(store, "patient_failures")) == (0, 0)
    store.record_chunk(RUN, scores, [PatientFailure(PatientId("x"), "map", "bad")])
    assert (_count(store, "scores"), _count(store, "patient_failures")) == (52, 1)


def test_watermark_only_moves_forward(store: ResultStore) -> None:
    assert store.watermark("dipro_nightly", "dipro") is None
    store.set_watermark("dipro_nightly", "dipro", AS_OF, RUN)
    store.set_watermark("dipro_nightly", "dipro", AS_OF - timedelta(days=3), RunId("backfill"))
    assert store.watermark("dipro_nightly", "dipro") == AS_OF
    store.set_watermark("dipro_nightly", "dipro", AS_OF + timedelta(days=1), RunId("run-2"))
    assert store.watermark("dipro_nightly", "dipro") == AS_OF + timedelta(days=1)
    assert store.watermark("dipro_nightly", "other-model") is None


def test_finish_run_records_status_counts_and_timings(store: ResultStore) -> None:
    store.finish_run(
        RUN, status="partial", counts={"scored": 9, "failed": 1}, timings_s={"score": 1.5}
    )
    run = store.run(RUN)
    assert run is not None
    assert (run.status, run.counts, run.timings) == (
        "partial",
        {"scored": 9, "failed": 1},
        {"score": 1.5},
    )
    assert run.finished_at is not None
    assert run.finished_at >= run.started_at
    with pytest.raises(KeyError):
        store.finish_run(RunId("never-started"), status="success")
    with pytest.raises(ValueError, match="status"):
        store.finish_run(RUN, status="done")
