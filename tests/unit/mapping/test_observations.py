"""Bad and edge-case Observations become issues, never crashes."""

from __future__ import annotations

from typing import Any

import pytest

from dipro_fhir.mapping.observations import available_at, map_observation
from dipro_fhir.mapping.variables import spec_for


def observation(**overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "obs-1",
        "meta": {"versionId": "3"},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "effectiveDateTime": "2026-01-02T10:15:00+01:00",
        "valueQuantity": {"value": 72, "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    resource.update(overrides)
    return {k: v for k, v in resource.items() if v is not None}


def test_a_good_observation_gives_one_event_with_utc_time_and_version() -> None:
    events, issues = map_observation(observation())
    assert issues == []
    (event,) = events
    assert (event.variable, event.value) == ("heart_rate", 72.0)
    assert event.effective.isoformat() == "2026-01-02T09:15:00+00:00"
    assert event.source.version == "3"


def test_unknown_unit_is_an_issue_naming_the_resource() -> None:
    qty = {"value": 72, "system": "http://unitsofmeasure.org", "code": "furlong/fortnight"}
    events, issues = map_observation(observation(valueQuantity=qty))
    assert events == []
    assert [(i.code, i.resource) for i in issues] == [("unknown-unit", "Observation/obs-1")]


def test_unit_text_is_used_when_there_is_no_ucum_code() -> None:
    events, _ = map_observation(observation(valueQuantity={"value": 72, "unit": "bpm"}))
    assert [e.value for e in events] == [72.0]


def test_missing_code_is_not_a_dipro_observation() -> None:
    assert map_observation(observation(code=None)) == ([], [])


@pytest.mark.parametrize("bad", ["72", True, None, float("nan"), float("inf"), [72]])
def test_non_numeric_value_is_an_invalid_value_issue(bad: object) -> None:
    qty = {"value": bad, "system": "http://unitsofmeasure.org", "code": "/min"}
    events, issues = map_observation(observation(valueQuantity=qty))
    assert events == []
    assert [i.code for i in issues] == ["invalid-value"]


@pytest.mark.parametrize(
    "effective",
    [{"effectiveDateTime": "2026-13-02"}, {"effectiveDateTime": "2026-01-02T10:15:00"},
     {"effectiveDateTime": "2026-01"}, {"effectiveDateTime": 5}, {}],
)  # fmt: skip
def test_missing_or_bad_effective_time_is_an_invalid_resource_issue(
    effective: dict[str, Any],
) -> None:
    resource = observation(effectiveDateTime=None)
    resource.update(effective)
    events, issues = map_observation(resource)
    assert events == []
    assert [i.code for i in issues] == ["invalid-resource"]


def test_period_effective_time_uses_the_end() -> None:
    period = {"start": "2026-01-02T08:00:00Z", "end": "2026-01-02T09:00:00Z"}
    events, _ = map_observation(observation(effectiveDateTime=None, effectivePeriod=period))
    assert events[0].effective.isoformat() == "2026-01-02T09:00:00+00:00"


def test_out_of_range_value_is_dropped_not_clipped() -> None:
    qty = {"value": 900, "system": "http://unitsofmeasure.org", "code": "/min"}
    events, issues = map_observation(observation(valueQuantity=qty))
    assert events == []
    assert [i.code for i in issues] == ["out-of-range"]
    assert "dropped" in issues[0].detail


def test_censored_value_is_dropped_with_an_issue() -> None:
    code = {"coding": [{"system": "http://loinc.org", "code": "6598-7"}]}
    qty = {"value": 0.01, "comparator": "<", "system": "http://unitsofmeasure.org",
           "code": "ng/mL"}  # fmt: skip
    events, issues = map_observation(observation(code=code, valueQuantity=qty))
    assert events == []
    assert [i.code for i in issues] == ["censored-value"]


def test_preliminary_counts_and_registered_is_ignored() -> None:
    assert len(map_observation(observation(status="preliminary"))[0]) == 1
    events, issues = map_observation(observation(status="registered"))
    assert events == []
    assert [i.code for i in issues] == ["ignored-status"]


def test_fio2_percent_becomes_a_fraction_and_spo2_fraction_becomes_percent() -> None:
    fio2 = {"coding": [{"system": "http://loinc.org", "code": "3150-0"}]}
    pct = {"value": 40, "system": "http://unitsofmeasure.org", "code": "%"}
    assert map_observation(observation(code=fio2, valueQuantity=pct))[0][0].value == 0.4
    spo2 = {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]}
    frac = {"value": 0.97, "system": "http://unitsofmeasure.org", "code": "1"}
    value = map_observation(observation(code=spo2, valueQuantity=frac))[0][0].value
    assert value == pytest.approx(97.0)


def test_ph_without_unit_and_gcs_as_integer_are_accepted() -> None:
    ph = {"coding": [{"system": "http://loinc.org", "code": "2744-1"}]}
    assert map_observation(observation(code=ph, valueQuantity={"value": 7.31}))[0][0].value == 7.31
    eye = {"coding": [{"system": "http://loinc.org", "code": "9267-6"}]}
    events, _ = map_observation(observation(code=eye, valueQuantity=None, valueInteger=3))
    assert [(e.variable, e.value) for e in events] == [("gcs_eye_opening", 3.0)]


def test_heart_rate_without_unit_is_an_unknown_unit() -> None:
    events, issues = map_observation(observation(valueQuantity={"value": 72}))
    assert events == []
    assert [i.code for i in issues] == ["unknown-unit"]


def test_a_gcs_answer_of_another_part_is_an_invalid_value() -> None:
    eye = {"coding": [{"system": "http://loinc.org", "code": "9267-6"}]}
    motor_answer = {"coding": [{"system": "http://loinc.org", "code": "LA6567-7"}]}
    events, issues = map_observation(
        observation(code=eye, valueQuantity=None, valueCodeableConcept=motor_answer)
    )
    assert events == []
    assert [i.code for i in issues] == ["invalid-value"]


def test_codes_of_two_variables_on_one_element_are_ambiguous() -> None:
    code = {"coding": [{"system": "http://loinc.org", "code": "8867-4"},
                       {"system": "http://loinc.org", "code": "9279-1"}]}  # fmt: skip
    events, issues = map_observation(observation(code=code))
    assert events == []
    assert [i.code for i in issues] == ["ambiguous-code"]


def test_loinc_code_under_another_system_is_not_read() -> None:
    code = {"coding": [{"system": "http://snomed.info/sct", "code": "8867-4"}]}
    assert map_observation(observation(code=code)) == ([], [])


def test_missing_id_is_an_invalid_resource() -> None:
    events, issues = map_observation(observation(id=None))
    assert events == []
    assert [i.code for i in issues] == ["invalid-resource"]


def test_available_at_is_the_later_of_issued_and_last_updated() -> None:
    resource = observation(
        issued="2026-01-02T12:00:00Z",
        meta={"lastUpdated": "2026-01-02T14:30:00+01:00"},
    )
    known = available_at(resource)
    assert known is not None
    assert known.isoformat() == "2026-01-02T13:30:00+00:00"
    resource["meta"]["lastUpdated"] = "2026-01-02T10:00:00Z"
    assert available_at(resource) == available_at(observation(issued="2026-01-02T12:00:00Z"))


def test_kelvin_and_fahrenheit_temperatures_become_celsius() -> None:
    code = {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}
    degf = {"value": 98.6, "unit": "°F"}
    assert map_observation(observation(code=code, valueQuantity=degf))[0][0].value == (
        pytest.approx(37.0)
    )
    kelvin = {"value": 310.15, "system": "http://unitsofmeasure.org", "code": "K"}
    value = map_observation(observation(code=code, valueQuantity=kelvin))[0][0].value
    assert value == pytest.approx(37.0)
    assert spec_for("temperature").canonical_unit == "Cel"
