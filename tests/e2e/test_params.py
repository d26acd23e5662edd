"""The trigger form's parameters: defaults are valid, good input passes, bad input is refused.

Airflow applies a run's ``conf`` to a copy of the DAG's ``ParamsDict`` and validates every
parameter against its JSON schema; these tests do exactly that, so what they refuse is what
the trigger form and the REST API refuse. Ids pass the schema as any string: the ``plan``
task checks them and says in one line what is wrong (``tests/unit/pipeline/
test_trigger_params.py``, ``tests/e2e/test_trigger_form.py``), where a schema pattern is
reported as a dump of the regular expression.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow.sdk import DAG


def _resolve(dag: DAG, conf: dict[str, Any]) -> dict[str, Any]:
    params = copy.deepcopy(dag.params)
    params.update(conf)
    resolved: dict[str, Any] = params.validate()
    return resolved


def test_defaults_are_valid_and_score_the_active_cohort(dipro_dag: DAG) -> None:
    assert _resolve(dipro_dag, {}) == {
        "patient_ids": [],
        "group_id": None,
        "as_of": None,
        "cohort": "active",
        "model_version": None,
        "dry_run": False,
        "extraction_mode": None,
    }


@pytest.mark.parametrize(
    "conf",
    [
        {"patient_ids": ["p-001", "example.2", "A7"]},
        {"group_id": "icu-ward-3"},
        {"as_of": "2025-03-01T02:00:00Z"},
        {"as_of": "2025-03-01T02:00:00.250+01:00"},
        {"as_of": "2025-03-01T02:00:00"},
        {"cohort": "new_data", "model_version": "dipro-1.0.0", "dry_run": True},
        {"extraction_mode": "bulk"},
        {"extraction_mode": "rest"},
        # an emptied form: every field null; a blank line; ids the plan checks, not the schema
        {k: None for k in ("patient_ids", "group_id", "as_of", "cohort", "dry_run")},
        {"patient_ids": ["p-001", ""]},
        {"patient_ids": ["has space"], "group_id": "Group/icu"},
    ],
)
def test_well_formed_conf_validates(dipro_dag: DAG, conf: dict[str, Any]) -> None:
    resolved = _resolve(dipro_dag, conf)
    assert {k: resolved[k] for k in conf} == conf


@pytest.mark.parametrize(
    "conf",
    [
        {"patient_ids": "p-001"},
        {"patient_ids": [1, 2]},
        {"as_of": "yesterday"},
        {"as_of": "2025-03-01"},
        {"cohort": "foo"},
        {"model_version": ""},
        {"dry_run": "yes"},
        {"extraction_mode": "ftp"},
    ],
)
def test_malformed_conf_is_refused(dipro_dag: DAG, conf: dict[str, Any]) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _resolve(dipro_dag, conf)


def test_every_param_is_described_for_the_trigger_form(dipro_dag: DAG) -> None:
    for name in dipro_dag.params.dump():
        assert dipro_dag.params.get_param(name).description, name
        assert f"`{name}`" in (dipro_dag.doc_md or ""), name
