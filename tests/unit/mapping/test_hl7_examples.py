"""The official HL7 FHIR R4 example Observations map to the right variable and number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dipro_fhir.mapping.observations import available_at, dipro_variables_of, map_observation

DATA = Path(__file__).resolve().parents[2] / "data" / "fhir"


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / f"Observation-{name}.json").read_text())
    return loaded


def values(name: str) -> dict[str, float]:
    events, _ = map_observation(load(name))
    return {e.variable: e.value for e in events}


def issue_codes(name: str) -> list[str]:
    return [i.code for i in map_observation(load(name))[1]]


def test_weight_in_pounds_becomes_kilograms() -> None:
    assert values("example") == {"weight": pytest.approx(185 * 0.45359237)}
    assert values("example")["weight"] == pytest.approx(83.91458845)


def test_height_in_inches_becomes_centimetres() -> None:
    assert values("body-height") == {"height": pytest.approx(66.9 * 2.54)}


def test_blood_pressure_panel_gives_systolic_and_diastolic() -> None:
    assert values("blood-pressure") == {
        "systolic_blood_pressure": 107.0,
        "diastolic_blood_pressure": 60.0,
    }


def test_data_absent_component_is_an_issue_and_the_other_component_survives() -> None:
    events, issues = map_observation(load("blood-pressure-dar"))
    assert [(e.variable, e.value) for e in events] == [("systolic_blood_pressure", 107.0)]
    absent = [i for i in issues if i.code == "data-absent"]
    assert len(absent) == 1
    assert absent[0].resource == "Observation/blood-pressure-dar"
    assert "diastolic" in absent[0].detail


@pytest.mark.parametrize(
    ("name", "status"),
    [("blood-pressure-cancel", "cancelled"), ("unsat", "cancelled"), ("f202", "entered-in-error")],
)
def test_cancelled_and_entered_in_error_give_no_event_but_an_ignored_status_issue(
    name: str, status: str
) -> None:
    events, issues = map_observation(load(name))
    assert events == []
    assert [(i.code, i.detail) for i in issues] == [("ignored-status", f"status {status}")]


def test_glucose_mmol_per_litre_becomes_mg_per_decilitre() -> None:
    assert values("f001") == {"glucose": pytest.approx(6.3 * 18.016)}


def test_glasgow_coded_components_give_the_three_ordinal_parts() -> None:
    assert values("glasgow") == {
        "gcs_eye_opening": 4.0,
        "gcs_motor_response": 5.0,
        "gcs_verbal_response": 4.0,
    }


def test_glasgow_without_ordinal_extension_falls_back_to_loinc_answer_codes() -> None:
    resource = load("glasgow")
    for component in resource["component"]:
        for coding in component["valueCodeableConcept"]["coding"]:
            coding.pop("extension", None)
            if coding["system"] != "http://loinc.org":
                coding["code"] = "99"  # the local codes no longer say anything
    events, issues = map_observation(resource)
    assert {e.variable: e.value for e in events} == {
        "gcs_eye_opening": 4.0,
        "gcs_motor_response": 5.0,
        "gcs_verbal_response": 4.0,
    }
    assert issues == []


@pytest.mark.parametrize(
    ("name", "variable", "value"),
    [
        ("satO2", "oxygen_saturation", 95.0),
        ("body-temperature", "temperature", 36.5),
        ("respiratory-rate", "respiratory_rate", 26.0),
        ("heart-rate", "heart_rate", 44.0),
        ("mbp", "mean_blood_pressure", 80.0),
    ],
)
def test_vital_sign_examples_map_to_their_variable(name: str, variable: str, value: float) -> None:
    assert values(name) == {variable: value}


def test_sato2_with_two_loinc_codes_of_one_variable_gives_one_event() -> None:
    events, issues = map_observation(load("satO2"))
    assert len(events) == 1
    assert issues == []


@pytest.mark.parametrize("name", ["bmi", "abdo-tender", "vitals-panel"])
def test_non_dipro_observations_give_neither_events_nor_issues(name: str) -> None:
    assert dipro_variables_of(load(name)) == ()
    assert map_observation(load(name)) == ([], [])


def test_date_only_effective_time_is_midnight_utc_with_an_imprecise_time_issue() -> None:
    events, issues = map_observation(load("heart-rate"))
    assert events[0].effective.isoformat() == "1999-07-02T00:00:00+00:00"
    assert [i.code for i in issues] == ["imprecise-time"]


def test_period_effective_time_uses_the_start_when_there_is_no_end() -> None:
    events, _ = map_observation(load("f001"))
    assert events[0].effective.isoformat() == "2013-04-02T08:30:10+00:00"


def test_events_carry_the_resource_reference() -> None:
    events, _ = map_observation(load("f001"))
    assert events[0].source.reference == "Observation/f001"


def test_available_at_is_the_issued_instant_in_utc() -> None:
    known = available_at(load("f001"))
    assert known is not None
    assert known.isoformat() == "2013-04-03T14:30:10+00:00"
    assert available_at(load("heart-rate")) is None
