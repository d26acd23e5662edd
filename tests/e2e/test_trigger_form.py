"""The *Trigger Dag* form of ``dipro_nightly`` as Airflow renders it, and what its submits do.

The form is rendered from the DAG's serialized params (what ``GET /api/v2/dags/{id}/details``
returns, each ``Param.dump()``). :func:`form_field` applies the rules of Airflow 3.3's
``FlexibleForm`` to one of them: a field is *required* when its schema has a type and that
type does not include ``"null"`` (``FieldRow``); the widget follows the first non-null type
(``FieldSelector``: a boolean is a switch, a string with ``format: date-time`` a date picker,
an ``enum`` a dropdown, an array of strings a textarea with one value per line); a
dropdown's option shows ``values_display[str(value)]``, else the value, and ``null`` shows
as the word "null" (``FieldDropdown``). Then two submits run: a form with every field
emptied (``dag.test()``), and one with a malformed id (``airflow dags test``, whose output is
the tasks' logs).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO, VENV_BIN, AirflowEnv
from tests.e2e.test_dag_file_run import AS_OF, _configure, _run, _write_checkpoint
from tests.e2e.test_dag_file_run import cohort_dir as cohort_dir

EMPTY_FORM: dict[str, Any] = {
    "patient_ids": None,
    "group_id": None,
    "as_of": None,
    "cohort": None,
    "model_version": None,
    "dry_run": None,
    "extraction_mode": None,
}


def form_field(spec: dict[str, Any]) -> dict[str, Any]:
    """How the trigger form shows one serialized param: required, widget, dropdown options."""
    schema = spec["schema"]
    types = schema.get("type")
    required = bool(types) and (not isinstance(types, list) or "null" not in types)
    if isinstance(types, list):
        first = next((t for t in types if t != "null"), "string")
    else:
        first = types or "string"
    display = schema.get("values_display") or {}
    options = [
        display.get("null" if v is None else str(v), "null" if v is None else str(v))
        for v in schema.get("enum") or []
    ]
    if first == "boolean":
        widget = "switch"
    elif first == "string" and schema.get("format") == "date-time":
        widget = "date-time picker"
    elif first in ("null", "string", "number", "integer") and "enum" in schema:
        widget = "dropdown"
    elif first == "array" and (schema.get("items") or {}).get("type") in (None, "string"):
        widget = "textarea, one value per line"
    else:
        widget = f"input ({first})"
    return {"required": required, "widget": widget, "options": options}


@pytest.fixture(scope="module")
def form(dipro_dag: Any) -> dict[str, dict[str, Any]]:
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dipro_dag))
    return {name: {**param.dump(), **form_field(param.dump())}
            for name, param in serialized.params.items()}  # fmt: skip


def test_no_field_of_the_form_is_marked_required(form: dict[str, dict[str, Any]]) -> None:
    assert {name for name, field in form.items() if field["required"]} == set()


def test_each_field_has_its_widget_a_description_and_no_option_reads_null(
    form: dict[str, dict[str, Any]],
) -> None:
    widgets = {name: field["widget"] for name, field in form.items()}
    assert widgets == {
        "patient_ids": "textarea, one value per line",
        "group_id": "input (string)",
        "as_of": "date-time picker",
        "cohort": "dropdown",
        "model_version": "input (string)",
        "dry_run": "switch",
        "extraction_mode": "dropdown",
    }
    for name, field in form.items():
        assert field["description"], name
        assert "null" not in field["options"], (name, field["options"])
    assert form["extraction_mode"]["options"][0].startswith("the site's setting")
    assert form["cohort"]["value"] == "active"


def test_the_dag_has_a_description(dipro_dag: Any) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dipro_dag))
    assert serialized.description
    assert "RiskAssessment" in serialized.description


@pytest.mark.e2e
@pytest.mark.slow
def test_a_form_with_every_field_emptied_scores_the_active_cohort(
    airflow_env: AirflowEnv,
    cohort_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _configure(monkeypatch, tmp_path, cohort_dir)
    _write_checkpoint(tmp_path / "checkpoint", with_preprocessing=True)
    run, states = _run(AS_OF, EMPTY_FORM)
    assert run.state == "success", states
    assert any(task == "write_back" and v == "success" for (task, _), v in states.items())
    written = (tmp_path / "results" / "RiskAssessment.ndjson").read_text().splitlines()
    assert written, "the empty form scored nobody"


@pytest.mark.e2e
@pytest.mark.slow
def test_a_bad_id_fails_the_plan_and_the_logs_last_error_line_says_why(
    airflow_env: AirflowEnv,
    cohort_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``airflow dags test`` in a subprocess: its output is each task's log, in order."""
    _configure(monkeypatch, tmp_path, cohort_dir)
    _write_checkpoint(tmp_path / "checkpoint", with_preprocessing=True)
    environ = {
        **airflow_env.environ,
        **{k: v for k, v in os.environ.items() if k.startswith("DIPRO_")},
    }
    environ["PYTHONPATH"] = os.pathsep.join((str(REPO), environ.get("PYTHONPATH", "")))
    conf = json.dumps({"patient_ids": ["synth-000000", "MRN 0042"]})
    done = subprocess.run(
        [str(VENV_BIN / "airflow"), "dags", "test", "dipro_nightly", AS_OF.isoformat(), "-c", conf],
        env=environ, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode != 0, log[-3000:]
    start = log.index("[DAG TEST] starting task_id=plan")
    lines = log[start : log.index("[DAG TEST] end task task_id=plan", start)].splitlines()
    traceback_at = next(i for i, line in enumerate(lines) if line.startswith("Traceback"))
    last_error_at = max(i for i, line in enumerate(lines) if "[error" in line)
    assert last_error_at > traceback_at  # after Airflow's traceback, where the log view opens
    assert (
        "plan failed: patient_ids, entry 2, is not a FHIR id (8 characters; "
        in lines[last_error_at]
    ), lines[last_error_at]
    assert "[DAG TEST] starting task_id=score" not in log  # nothing was scored
    assert "MRN 0042" not in log
