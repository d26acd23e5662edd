"""``dipro_nightly`` runs under ``dag.test()`` on a synthetic cohort kept as files.

The sources are the real file implementations (FHIR NDJSON, a DICOM folder), the results go
to SQLite and NDJSON: the whole DAG, every task body, in-process, in a few seconds. The runs
against real servers (FHIR, Orthanc, PostgreSQL) are in the full end-to-end tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.checkpoints import write_tiny_checkpoint
from tests.e2e.conftest import DAGS_FOLDER, AirflowEnv

AS_OF = datetime(2025, 3, 10, 2, tzinfo=UTC)
MODEL_VERSION = "0.0.1"


def _write_checkpoint(directory: Path, *, with_preprocessing: bool) -> None:
    write_tiny_checkpoint(
        directory, name="dipro-e2e", version=MODEL_VERSION, preprocessing=with_preprocessing
    )


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic ICU stays as FHIR NDJSON + DICOM files, as of ``AS_OF``."""
    from dipro_fhir.synth.load import write_files
    from dipro_fhir.synth.world import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    patients = generate_cohort(
        4, seed=7, start=AS_OF - timedelta(days=6), admission_span_days=5, reference_time=AS_OF
    )
    write_files(patients, out, image_size=(128, 128))
    return out


def _configure(monkeypatch: pytest.MonkeyPatch, work: Path, cohort: Path) -> str:
    from dipro_fhir.store.migrate import upgrade_database

    store_url = f"sqlite:///{work / 'results.sqlite'}"
    upgrade_database(store_url)
    environ = {
        "DIPRO_FHIR__NDJSON_DIR": str(cohort),
        "DIPRO_DICOMWEB__FOLDER": str(cohort / "dicom"),
        "DIPRO_MODEL__CHECKPOINT": str(work / "checkpoint"),
        "DIPRO_RUN__STAGING_DIR": str(work / "staging"),
        "DIPRO_RUN__CHUNK_SIZE": "2",
        "DIPRO_WRITEBACK__TARGET": "ndjson",
        "DIPRO_WRITEBACK__NDJSON_DIR": str(work / "results"),
        "DIPRO_STORE__URL": store_url,
        "DIPRO_TASK_RETRIES": "0",  # read when the DAG is parsed: fail fast in tests
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    for conn_id in ("DIPRO_FHIR", "DIPRO_DICOMWEB", "DIPRO_RESULTS_DB"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id}", raising=False)
    return store_url


def _run(logical_date: datetime, conf: dict[str, Any]) -> tuple[Any, dict[tuple[str, int], str]]:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["dipro_nightly"]  # parsed with this env
    run = dag.test(logical_date=logical_date, run_conf=conf)
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    return run, states


@pytest.mark.e2e
@pytest.mark.slow
def test_dry_run_scores_every_chunk_and_writes_nothing(
    airflow_env: AirflowEnv,
    cohort_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy import create_engine

    from dipro_fhir.store.results import ResultStore

    store_url = _configure(monkeypatch, tmp_path, cohort_dir)
    _write_checkpoint(tmp_path / "checkpoint", with_preprocessing=True)
    run, states = _run(AS_OF, {"dry_run": True})
    assert run.state == "success", states
    chunk_states = {k: v for k, v in states.items() if k[0] in ("extract", "score", "write_back")}
    assert chunk_states, "the plan produced no chunks"
    assert set(chunk_states.values()) == {"success"}
    assert states[("finalize", -1)] == "success"
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    store = ResultStore(create_engine(store_url))
    assert store.watermark("dipro_nightly", "dipro-e2e") is None


@pytest.mark.e2e
@pytest.mark.slow
def test_failed_chunks_are_summarised_and_fail_the_run(
    airflow_env: AirflowEnv,
    cohort_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy import create_engine

    from dipro_fhir.run import pipeline
    from dipro_fhir.store.results import ResultStore

    store_url = _configure(monkeypatch, tmp_path, cohort_dir)
    # A checkpoint without the preprocessing record: every score task fails for real.
    _write_checkpoint(tmp_path / "checkpoint", with_preprocessing=False)
    as_of = AS_OF + timedelta(days=1)
    run, states = _run(as_of, {"patient_ids": ["synth-000000", "synth-000001", "synth-000002"]})
    assert run.state == "failed"
    assert states[("score", 0)] == "failed"
    assert states[("finalize", -1)] == "failed"  # it ran (all_done), summarised, then failed
    request = pipeline.RunRequest(
        as_of=as_of, dag_run_id="x", patient_ids=("synth-000000", "synth-000001", "synth-000002")
    )
    run_id = pipeline.run_id_for(request, MODEL_VERSION)
    record = ResultStore(create_engine(store_url)).run(run_id)
    assert record is not None
    assert record.status == "failed"
    assert record.counts["patients"] == 3
    assert record.counts["failed_patients"] == 3


@pytest.mark.e2e
@pytest.mark.slow
def test_the_plan_refuses_an_unvalidated_checkpoint_and_nothing_is_scored(
    airflow_env: AirflowEnv,
    cohort_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy import create_engine, func, select

    from dipro_fhir.store.models import PatientFailureRow, Run, ScoreRow
    from tests.checkpoints import write_untrained_checkpoint

    store_url = _configure(monkeypatch, tmp_path, cohort_dir)
    write_untrained_checkpoint(tmp_path / "checkpoint")
    run, states = _run(AS_OF + timedelta(days=2), {})
    assert run.state == "failed"
    assert states[("plan", -1)] == "failed"
    assert not any(v == "success" for (task, _), v in states.items() if task == "score")
    engine = create_engine(store_url)
    with engine.connect() as conn:
        # The refused night is recorded as a failed run, with the gate's reason (issue 23).
        assert [tuple(r) for r in conn.execute(select(Run.status, Run.kind))] == [
            ("failed", "manual")
        ]
        (reason, detail) = conn.execute(
            select(PatientFailureRow.reason, PatientFailureRow.detail)
        ).one()
        assert reason == "plan-failed"
        assert "validation" in detail
        assert conn.execute(select(func.count()).select_from(ScoreRow)).scalar() == 0
    engine.dispose()
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
