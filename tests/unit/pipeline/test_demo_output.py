"""What the demo prints: the risk spread per task, and a failed DAG's last error line."""

from __future__ import annotations

from datetime import UTC, datetime

from dipro_fhir.cli.demo import last_error
from dipro_fhir.core.timeline import PatientId, RunId
from dipro_fhir.reports.risk_spread import risk_spread_table
from dipro_fhir.store.results import StoredScore

AS_OF = datetime(2026, 11, 24, 2, tzinfo=UTC)


def _score(patient: str, task: str, outcome: str, p: float, band: str) -> StoredScore:
    return StoredScore(
        run_id=RunId("run-1"), patient_id=PatientId(patient), encounter_id=None, task=task,
        outcome=outcome, probability=p, risk_level=band, path="pairs", fhir_resource_id=None,
        model_name="m", model_version="1", as_of=AS_OF,
    )  # fmt: skip


def test_the_spread_table_has_a_row_per_task_outcome_and_names_a_narrow_one() -> None:
    scores = [
        _score("a", "progression", "pneumonia:worsened", 0.70, "high"),
        _score("a", "progression", "pneumonia:improved", 0.10, "low"),  # not shown
        _score("a", "mortality", "death", 0.10, "low"),
        _score("b", "mortality", "death", 0.30, "moderate"),
        _score("c", "mortality", "death", 0.60, "high"),
        _score("a", "los", "4-6d", 0.49, "moderate"),
        _score("b", "los", "4-6d", 0.51, "high"),
    ]
    lines = risk_spread_table(scores, {"failed_patients": 2}).splitlines()
    assert lines[0] == "3 patients scored, 2 failed"
    rows = [line.split() for line in lines[2:-1]]
    assert [r[0] for r in rows] == ["mortality", "length", "progression"]  # fixed task order
    assert rows[0][1:] == ["death", "3", "0.100", "0.300", "0.600", "1", "/", "1", "/", "1"]
    assert rows[2][1:4] == ["pneumonia", "worsened", "1"]
    assert lines[-1].endswith("apart): length of stay 4-6d")  # 0.49-0.51: narrow


def test_the_last_error_line_of_airflows_log_is_its_message() -> None:
    log = (
        "2026-12-06T16:10:07.924162Z [error    ] Task failed with exception     [task] "
        "loc=task_runner.py:1676\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "dipro_fhir.core.errors.SourceUnavailable: GET Encounter: ConnectionError\n"
        "2026-12-06T16:10:07.978891Z [error    ] plan failed: SourceUnavailable: GET "
        "Encounter: ConnectionError after 6 attempts [_dipro_failure] loc=_dipro_failure.py:60\n"
        "2026-12-06T16:10:07.979000Z [info     ] ::endgroup:: [task] loc=task_runner.py:2379\n"
    )
    assert last_error(log) == (
        "plan failed: SourceUnavailable: GET Encounter: ConnectionError after 6 attempts"
    )
    assert last_error("no errors here\n") is None
