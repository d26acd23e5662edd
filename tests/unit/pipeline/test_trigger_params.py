"""The trigger form's parameters become a run request: an empty form is the nightly default,
and a malformed parameter is refused with one line that names it (never an id's text)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dipro_fhir.core.errors import ConfigError
from dipro_fhir.run.trigger import run_request_from_params

LOGICAL = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
EMPTY_FORM = {
    "patient_ids": None,
    "group_id": None,
    "as_of": None,
    "cohort": None,
    "model_version": None,
    "dry_run": None,
    "extraction_mode": None,
}


def _request(params: dict[str, Any]) -> Any:
    return run_request_from_params(
        params, logical_date=LOGICAL, dag_run_id="manual__x", kind="manual"
    )


@pytest.mark.parametrize("params", [EMPTY_FORM, {}, {**EMPTY_FORM, "patient_ids": ["", "  "]}])
def test_an_empty_form_scores_the_active_cohort_as_of_the_logical_date(
    params: dict[str, Any],
) -> None:
    request = _request(params)
    assert request.as_of == LOGICAL
    assert request.cohort == "active"
    assert request.patient_ids == ()
    assert request.group_id is None
    assert request.model_version is None
    assert request.dry_run is False
    assert request.run_kind == "manual"


def test_filled_parameters_are_taken_blank_lines_dropped_and_ids_listed_once() -> None:
    request = _request(
        {
            "patient_ids": ["p-001", "", " example.2 ", "p-001"],
            "as_of": "2026-11-20T03:30:00+01:00",
            "cohort": "new_data",
            "model_version": "0.2.0-demo",
            "dry_run": True,
        }
    )
    assert request.patient_ids == ("p-001", "example.2")
    assert request.as_of == datetime(2026, 11, 20, 2, 30, tzinfo=UTC)
    assert (request.cohort, request.model_version, request.dry_run) == (
        "new_data",
        "0.2.0-demo",
        True,
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"patient_ids": ["p-001", "MRN 1234567"]},
            "patient_ids, entry 2, is not a FHIR id (11 characters; 1-64 of A-Z a-z 0-9 - . "
            "are allowed)",
        ),
        ({"patient_ids": [17]}, "patient_ids, entry 1, is not a FHIR id (1-64 of A-Z a-z"),
        ({"patient_ids": "p-001"}, "patient_ids must be a list of Patient ids"),
        ({"group_id": "Group/icu"}, "group_id is not a FHIR id (9 characters;"),
        ({"as_of": "yesterday"}, "as_of: 'yesterday' is not an ISO 8601 date-time"),
        ({"cohort": "everyone"}, "cohort: 'everyone' is not one of active, new_data"),
    ],
)
def test_a_malformed_parameter_is_refused_in_one_line_naming_it(
    params: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _request(params)
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message
    assert "1234567" not in message  # ids are never quoted
    assert "Group/icu" not in message
