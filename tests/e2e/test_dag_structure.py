"""The DAG files parse cleanly, wire the pipeline's steps as designed, and stay cheap to parse.

Parsed by a real ``DagBag``, the way the DAG processor does it; the parse-time options are
read from the environment, so one test parses again with other values.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import DAGS_FOLDER, airflow_subprocess_environ

if TYPE_CHECKING:
    from airflow.sdk import DAG

CHUNK_TASKS = ("extract", "score", "write_back")


def _parse(monkeypatch: pytest.MonkeyPatch, **environ: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}, bag.import_errors
    return bag


def test_dags_folder_parses_without_import_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = _parse(monkeypatch)
    assert set(bag.dag_ids) == {"dipro_nightly", "dipro_retract", "dipro_monitor"}


def test_retract_dag_has_one_task_and_required_params(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = _parse(monkeypatch).dags["dipro_retract"]
    assert dag.task_ids == ["retract"]
    assert {"model_version", "reason", "since", "until", "patient_ids"} <= set(dag.params)
    assert dag.schedule is None or str(dag.timetable.summary) in ("None", "none")


def test_nightly_dag_wires_plan_chunks_and_finalize(dipro_dag: DAG) -> None:
    assert set(dipro_dag.task_ids) == {"plan", "bulk_export", *CHUNK_TASKS, "finalize"}
    assert dipro_dag.get_task("bulk_export").upstream_task_ids == {"plan"}
    assert dipro_dag.get_task("extract").upstream_task_ids == {"bulk_export"}
    assert dipro_dag.get_task("score").upstream_task_ids == {"extract"}
    assert dipro_dag.get_task("write_back").upstream_task_ids == {"score"}
    assert dipro_dag.get_task("finalize").upstream_task_ids == {"plan", *CHUNK_TASKS}


def test_chunk_tasks_are_dynamically_mapped(dipro_dag: DAG) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    for task_id in CHUNK_TASKS:
        assert isinstance(dipro_dag.get_task(task_id), MappedOperator), task_id
    assert not isinstance(dipro_dag.get_task("finalize"), MappedOperator)


def test_bulk_export_waits_in_a_trigger_that_round_trips(dipro_dag: DAG) -> None:
    from _dipro_bulk import BulkExportOperator, BulkExportTrigger

    task = dipro_dag.get_task("bulk_export")
    assert isinstance(task, BulkExportOperator)
    assert task.template_fields == ("manifests", "extraction_mode")
    trigger = BulkExportTrigger(state={"jobs": [], "folder": "/x"}, timeout_s=60.0)
    classpath, kwargs = trigger.serialize()
    assert classpath == "_dipro_bulk.BulkExportTrigger"
    assert BulkExportTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_finalize_runs_even_when_a_chunk_failed(dipro_dag: DAG) -> None:
    assert dipro_dag.get_task("finalize").trigger_rule == "all_done"


def test_plan_chunk_and_finalize_tasks_retry_with_exponential_backoff(dipro_dag: DAG) -> None:
    for task_id in ("plan", *CHUNK_TASKS, "finalize"):
        task = dipro_dag.get_task(task_id)
        assert task.retries == 2, task_id
        assert task.retry_delay == timedelta(seconds=30), task_id
        assert task.retry_exponential_backoff > 1, task_id
        assert task.max_retry_delay == timedelta(minutes=10), task_id


def test_every_task_ends_a_failed_log_with_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from _dipro_failure import failure_line, log_failure_last, log_retry_last

    bag = _parse(monkeypatch)
    for dag in bag.dags.values():
        assert dag.description, dag.dag_id
        for task in dag.tasks:
            for kind, callback in (("failure", log_failure_last), ("retry", log_retry_last)):
                given = getattr(task, f"on_{kind}_callback")
                assert callback in (given if isinstance(given, list) else [given]), task.task_id

    class SourceUnavailable(Exception):
        pass

    error = SourceUnavailable("GET Encounter: ConnectionError after 6 attempts\nsecond line")
    assert failure_line("extract[3]", error, will_retry=True) == (
        "extract[3] failed (it will be retried): SourceUnavailable: GET Encounter: "
        "ConnectionError after 6 attempts"
    )
    from airflow.sdk.exceptions import AirflowFailException

    refused = AirflowFailException("patient_ids, entry 2, is not a FHIR id")
    assert failure_line("plan", refused, will_retry=False) == (
        "plan failed: patient_ids, entry 2, is not a FHIR id"
    )
    assert failure_line("plan", KeyError(), will_retry=False) == "plan failed: KeyError"


def test_a_runs_kind_follows_airflows_run_type() -> None:
    from airflow.utils.types import DagRunType

    from tests.modules import load_module

    nightly = load_module(DAGS_FOLDER / "dipro_nightly.py", "dipro_nightly_kinds")

    class _Run:
        def __init__(self, run_type: object) -> None:
            self.run_type = run_type

    kinds = {t.value: nightly._run_kind(_Run(t)) for t in DagRunType}
    assert kinds["scheduled"] == "nightly"
    assert kinds["backfill"] == "backfill"
    assert {k for t, k in kinds.items() if t not in ("scheduled", "backfill")} == {"manual"}


def test_scoring_runs_on_gpu_queue_and_default_pool_by_default(dipro_dag: DAG) -> None:
    score = dipro_dag.get_task("score")
    assert score.queue == "gpu"
    assert score.pool is None  # None: the scheduler puts it in Airflow's default_pool
    assert dipro_dag.get_task("extract").queue != "gpu"


def test_nightly_schedule_runs_one_night_at_a_time(dipro_dag: DAG) -> None:
    from airflow.sdk import CronTriggerTimetable

    assert dipro_dag.catchup is False
    assert dipro_dag.max_active_runs == 1
    assert isinstance(dipro_dag.timetable, CronTriggerTimetable)
    assert dipro_dag.timetable.expression == "0 2 * * *"
    assert dipro_dag.doc_md
    assert "airflow backfill create" in dipro_dag.doc_md


def test_parse_time_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = _parse(
        monkeypatch,
        DIPRO_SCHEDULE="30 3 * * *",
        DIPRO_GPU_QUEUE="cuda-a100",
        DIPRO_GPU_POOL="gpu",
        DIPRO_TASK_RETRIES="4",
        DIPRO_RETRY_DELAY_S="5",
    )
    dag = bag.dags["dipro_nightly"]
    score = dag.get_task("score")
    assert (score.queue, score.pool, score.retries) == ("cuda-a100", "gpu", 4)
    assert score.retry_delay == timedelta(seconds=5)
    assert dag.timetable.expression == "30 3 * * *"


def test_schedule_none_leaves_manual_and_backfill_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.definitions.timetables.simple import NullTimetable

    dag = _parse(monkeypatch, DIPRO_SCHEDULE="none").dags["dipro_nightly"]
    assert isinstance(dag.timetable, NullTimetable)


@pytest.mark.slow
def test_parsing_the_dag_file_does_not_import_torch_or_pydicom() -> None:
    script = (
        "import runpy, sys\n"
        f"runpy.run_path({str(DAGS_FOLDER / 'dipro_nightly.py')!r})\n"
        "stages = {'pipeline', 'plan', 'extract_stage', 'score_stage', 'writeback_stage',"
        " 'finalize', 'stage_common'}\n"
        "heavy = {'torch', 'pydicom', 'dipro'} | {f'dipro_fhir.run.{m}' for m in stages}\n"
        "heavy = sorted(heavy & set(sys.modules))\n"
        "assert not heavy, heavy\n"
        "assert 'airflow' in sys.modules\n"
    )
    _passes_in_a_fresh_interpreter(script)


def test_monitor_dag_gathers_outcomes_then_computes_then_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk import CronTriggerTimetable

    dag = _parse(monkeypatch).dags["dipro_monitor"]
    assert set(dag.task_ids) == {"gather_outcomes", "compute", "check"}
    assert dag.get_task("compute").upstream_task_ids == {"gather_outcomes"}
    assert dag.get_task("check").upstream_task_ids == {"compute"}
    assert dag.get_task("check").retries == 0  # a breach is not retried
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 6 * * *"
    assert "as_of" in dag.params
    later = _parse(monkeypatch, DIPRO_MONITOR_SCHEDULE="15 7 * * *").dags["dipro_monitor"]
    assert later.timetable.expression == "15 7 * * *"


@pytest.mark.slow
def test_parsing_the_monitor_dag_does_not_import_torch_or_the_monitor() -> None:
    script = (
        "import runpy, sys\n"
        f"runpy.run_path({str(DAGS_FOLDER / 'dipro_monitor.py')!r})\n"
        "heavy = {'torch', 'pydicom', 'dipro', 'numpy', 'dipro_fhir.monitoring'}\n"
        "heavy = sorted(heavy & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    _passes_in_a_fresh_interpreter(script)


def _passes_in_a_fresh_interpreter(script: str) -> None:
    """Run ``script`` in a new Python with Airflow's test environment; it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=airflow_subprocess_environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
