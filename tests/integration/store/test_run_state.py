"""Run state that tells the truth, on PostgreSQL: re-runs, stale runs, concurrent runs.

Whole runs (:func:`run_locally`, the CLI's path) over a small synthetic cohort kept as
files, into a migrated PostgreSQL database:

- a failed night re-run successfully: the earlier failures are kept, marked superseded;
- a failing re-run of a complete night leaves it complete;
- a run killed in flight is found stale by its heartbeat and resumed by the next run;
- two concurrent runs of one night both finish, and only one of them writes anything.
"""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dipro_fhir.core.settings import RunSettings, Settings, StoreSettings, embedded_settings
from dipro_fhir.run import pipeline
from tests.checkpoints import write_tiny_checkpoint

AS_OF = datetime(2026, 2, 1, 2, tzinfo=UTC)
PATIENTS = 6


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import write_files

    out = tmp_path_factory.mktemp("cohort")
    people = generate_cohort(
        PATIENTS,
        seed=5,
        start=AS_OF - timedelta(days=3),
        admission_span_days=2,
        reference_time=AS_OF,
    )
    write_files(people, out, image_size=(96, 96))
    return out


def _settings(work: Path, cohort: Path, url: str) -> Settings:
    base = embedded_settings(work)
    shutil.copytree(cohort, work / "cohort", dirs_exist_ok=True)
    write_tiny_checkpoint(base.model.checkpoint, name="state", version="1")
    run = RunSettings(staging_dir=str(work / "staging"), chunk_size=2, log_salt=SecretStr("s"))
    return base.model_copy(update={"store": StoreSettings(url=SecretStr(url)), "run": run})


def _drop_patients(work: Path, count: int) -> str:
    """Remove ``count`` Patients from the export (their runs fail: not-found); return the
    original file's text."""
    path = work / "cohort" / "Patient.ndjson"
    text = path.read_text()
    path.write_text("".join(text.splitlines(keepends=True)[count:]))
    return text


def _failures(url: str) -> list[tuple[str, bool, str]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT patient_id, superseded, reason_class FROM patient_failures")
        ).all()
    engine.dispose()
    return [(r[0], bool(r[1]), r[2]) for r in rows]


def _request() -> pipeline.RunRequest:
    return pipeline.RunRequest(as_of=AS_OF, dag_run_id="state-test")


def _run_record(settings: Settings) -> Any:
    from dipro_fhir.run import connections

    run_id = pipeline.run_id_for(_request(), "1")
    return connections.result_store(settings).run(run_id)


def test_a_successful_rerun_supersedes_failures_and_a_failing_one_never_downgrades(
    cohort: Path, migrated_pg_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, cohort, migrated_pg_url)
    original = _drop_patients(tmp_path, 3)
    with pytest.raises(pipeline.RunFailed):
        pipeline.run_locally(settings, _request())
    first = _failures(migrated_pg_url)
    failed = _run_record(settings)
    assert failed.status == "failed"
    assert len(first) == failed.counts["failed_patients"] >= 2  # dropped ones in the cohort
    assert {c for _, _, c in first} == {"data"}

    (tmp_path / "cohort" / "Patient.ndjson").write_text(original)
    summary = pipeline.run_locally(settings, _request())
    assert summary["status"] == "success"
    assert summary["superseded_failures"] == len(first)
    after = _failures(migrated_pg_url)
    assert len(after) == len(first)  # kept as history ...
    assert all(superseded for _, superseded, _ in after)  # ... marked superseded
    record = _run_record(settings)
    assert (record.status, record.attempts) == ("success", 2)
    assert record.counts["failed_patients"] == 0

    _drop_patients(tmp_path, 4)  # a third attempt fails again
    with pytest.raises(pipeline.RunFailed):
        pipeline.run_locally(settings, _request())
    record = _run_record(settings)
    assert (record.status, record.attempts) == ("success", 3)  # the night stays complete
    assert record.counts["failed_patients"] == 0
    assert all(superseded for _, superseded, _ in _failures(migrated_pg_url))
    print(
        f"re-runs: {len(first)} failed -> {summary['scored']} scored, {len(first)} failures "
        f"superseded; failing 3rd attempt: status {record.status}, open failures 0"
    )


def test_a_run_killed_in_flight_is_marked_stale_and_resumed(
    cohort: Path, migrated_pg_url: str, tmp_path: Path
) -> None:
    from dipro_fhir.run import connections

    settings = _settings(tmp_path, cohort, migrated_pg_url)
    manifests = pipeline.plan_run(settings, _request())  # ... and the process dies here
    pipeline.extract_chunk(settings, manifests[0])
    store = connections.result_store(settings)
    run_id = pipeline.run_id_for(_request(), "1")
    assert store.run(run_id).status == "running"
    assert store.mark_stale(timedelta(hours=1)) == []  # its heartbeat is fresh
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE runs SET heartbeat_at = now() - interval '7 hours' WHERE id = :r"),
            {"r": run_id},
        )
    other = pipeline.RunRequest(as_of=AS_OF + timedelta(days=1), dag_run_id="next-night")
    pipeline.plan_run(settings, other)  # any later plan notices the dead run
    assert store.run(run_id).status == "stale"

    summary = pipeline.run_locally(settings, _request())  # resume: the same run id
    record = store.run(run_id)
    assert summary["run_id"] == run_id
    assert (record.status, record.attempts) == ("success", 2)
    print(
        f"stale run: marked stale after 7 h without heartbeat, resumed, {summary['scored']} scored"
    )


def test_two_concurrent_runs_of_one_night_both_finish_and_write_once(
    cohort: Path, migrated_pg_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, cohort, migrated_pg_url)
    summaries: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            summaries.append(pipeline.run_locally(settings, _request()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    assert [s["status"] for s in summaries] == ["success", "success"]
    written = sum(s["written"] for s in summaries)
    unchanged = sum(s["unchanged"] for s in summaries)
    lines = (tmp_path / "results" / "RiskAssessment.ndjson").read_text().splitlines()
    assert written == len(lines)  # every RiskAssessment written once, by one of the runs
    assert unchanged == len(lines)  # the other found each one identical
    assert not any((tmp_path / "staging").rglob("*.npz"))  # both cleaned up their own files
    print(f"concurrent runs: {written} written, {unchanged} unchanged, {len(lines)} resources")
