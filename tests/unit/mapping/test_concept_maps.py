"""Code maps are FHIR ConceptMaps: the shipped LOINC and MIMIC-IV maps, and a site's own."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dipro.vocab import VARIABLES
from dipro_fhir.fhir.resources import validate_resource
from dipro_fhir.mapping.code_maps import (
    BUILTIN_MAPS,
    build_code_maps,
    builtin_concept_map,
    default_code_maps,
)
from dipro_fhir.mapping.concept_map import (
    OUTCOME_SYSTEM,
    UNIT_PROPERTY,
    VARIABLE_SYSTEM,
    ConceptMapError,
    read_concept_map,
)
from dipro_fhir.mapping.observations import map_observation
from dipro_fhir.mapping.variables import LOINC_SYSTEM, spec_for

CHART = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-chartevents-d-items"
LAB = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-d-labitems"
OUTPUT = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-d-items"
MIMIC_UNITS = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-units"
LOCAL = "https://hospital.example.org/CodeSystem/lab"


def mimic_observation(system: str, code: str, value: float, unit: str | None) -> dict[str, Any]:
    """An Observation shaped like MIMIC-IV on FHIR's chartevents/labevents profiles."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"mimic-{code}",
        "meta": {
            "profile": [
                "http://mimic.mit.edu/fhir/mimic/StructureDefinition/mimic-observation-chartevents"
            ]
        },
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-observation-category",
                        "code": "Routine Vital Signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/mimic-patient"},
        "encounter": {"reference": "Encounter/mimic-icu-stay"},
        "effectiveDateTime": "2180-07-23T14:00:00-04:00",
        "issued": "2180-07-23T14:05:00-04:00",
        "valueQuantity": {"value": value},
    }
    if unit is not None:
        resource["valueQuantity"] |= {"unit": unit, "system": MIMIC_UNITS, "code": unit}
    return resource


def site_map(*elements: dict[str, Any], source: str | None = LOCAL) -> dict[str, Any]:
    group: dict[str, Any] = {"target": VARIABLE_SYSTEM, "element": list(elements)}
    if source is not None:
        group["source"] = source
    return {
        "resourceType": "ConceptMap",
        "url": "https://hospital.example.org/ConceptMap/lab",
        "version": "3",
        "status": "active",
        "group": [group],
    }


def element(code: str, variable: str, unit: str | None = None, **target: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"code": variable, "equivalence": "equivalent", **target}
    if unit is not None:
        t["product"] = [
            {"property": UNIT_PROPERTY, "system": "http://unitsofmeasure.org", "value": unit}
        ]
    return {"code": code, "target": [t]}


def only_event(resource: dict[str, Any], maps: Any = None) -> tuple[str, float]:
    events, issues = map_observation(resource, maps)
    assert issues == []
    (event,) = events
    return event.variable, event.value


@pytest.mark.parametrize("name", BUILTIN_MAPS)
def test_shipped_maps_are_valid_fhir_r4_concept_maps(name: str) -> None:
    resource = builtin_concept_map(name)
    validate_resource(resource)
    assert resource["resourceType"] == "ConceptMap"
    assert read_concept_map(resource)


def test_loinc_and_mimic_maps_cover_all_38_variables() -> None:
    table = default_code_maps().variables
    for system in (LOINC_SYSTEM, CHART):
        covered = {t.target_code for t in table.entries.values() if t.source_system == system}
        if system == CHART:
            covered.add("urine_output")  # MIMIC's urine output is an output item
        assert covered == set(VARIABLES), system


def test_mimic_heart_rate_temperature_in_fahrenheit_and_creatinine_are_mapped() -> None:
    assert only_event(mimic_observation(CHART, "220045", 92, "bpm")) == ("heart_rate", 92.0)
    variable, celsius = only_event(mimic_observation(CHART, "223761", 100.4, "°F"))
    assert variable == "temperature"
    assert celsius == pytest.approx(38.0)
    assert only_event(mimic_observation(LAB, "50912", 1.3, "mg/dL")) == ("creatinine", 1.3)
    assert only_event(mimic_observation(OUTPUT, "226559", 250, "ml")) == ("urine_output", 250.0)


def test_mimic_local_unit_text_and_missing_unit_take_the_maps_unit() -> None:
    # MIMIC records respiratory rate in "insp/min" and GCS parts with no unit at all.
    assert only_event(mimic_observation(CHART, "220210", 18, "insp/min")) == (
        "respiratory_rate",
        18.0,
    )
    assert only_event(mimic_observation(CHART, "220739", 3, None)) == ("gcs_eye_opening", 3.0)
    variable, celsius = only_event(mimic_observation(CHART, "223761", 98.6, None))
    assert (variable, round(celsius, 3)) == ("temperature", 37.0)


def test_a_ucum_unit_the_variable_does_not_accept_stays_an_error() -> None:
    resource = mimic_observation(CHART, "220045", 92, None)
    resource["valueQuantity"] |= {"system": "http://unitsofmeasure.org", "code": "mg/dL"}
    events, issues = map_observation(resource)
    assert events == []
    assert [i.code for i in issues] == ["unknown-unit"]


@pytest.mark.parametrize(
    ("code", "value", "unit", "variable", "expected"),
    [
        ("20565-8", 24, "mmol/L", "bicarbonate", 24.0),
        ("14631-6", 17.104, "umol/L", "bilirubin", 1.0),
        ("14937-7", 5.0, "mmol/L", "blood_urea_nitrogen", 14.0),
        ("59826-8", 88.42, "umol/L", "creatinine", 1.0),
        ("59260-0", 10.0, "mmol/L", "hemoglobin", 16.114),
        ("8889-8", 70, "/min", "heart_rate", 70.0),
    ],
)
def test_loinc_si_and_alternative_codes_are_mapped(
    code: str, value: float, unit: str, variable: str, expected: float
) -> None:
    resource = mimic_observation(LOINC_SYSTEM, code, value, None)
    resource["valueQuantity"] |= {"system": "http://unitsofmeasure.org", "code": unit}
    found, converted = only_event(resource)
    assert found == variable
    assert converted == pytest.approx(expected)


def test_every_shipped_code_maps_a_normal_value_to_its_variable() -> None:
    table = default_code_maps().variables
    for t in table.entries.values():
        spec = spec_for(t.target_code)
        resource = mimic_observation(t.source_system, t.source_code, spec.normal, None)
        resource["valueQuantity"] |= {
            "system": "http://unitsofmeasure.org",
            "code": spec.canonical_unit,
        }
        assert only_event(resource) == (spec.name, pytest.approx(spec.normal)), t.source_code


def test_a_site_map_maps_local_codes_with_their_unit() -> None:
    maps = build_code_maps(
        [*(builtin_concept_map(n) for n in BUILTIN_MAPS), site_map(element("K+", "potassium"))]
    )
    resource = mimic_observation(LOCAL, "K+", 4.2, "mmol/l")
    assert only_event(resource, maps) == ("potassium", 4.2)
    assert map_observation(resource) == ([], [])  # unmapped without the site's map


def test_a_later_map_overrides_an_earlier_one_for_the_same_code() -> None:
    first = site_map(element("X1", "sodium"))
    second = site_map(element("X1", "chloride"))
    maps = build_code_maps([first, second])
    assert maps.variables.lookup(LOCAL, "X1").target_code == "chloride"  # type: ignore[union-attr]


def test_unmatched_and_disjoint_elements_map_nothing() -> None:
    maps = build_code_maps([site_map(element("X2", "sodium", equivalence="unmatched"))])
    assert maps.variables.lookup(LOCAL, "X2") is None


def test_a_group_without_source_matches_any_system_ignoring_case() -> None:
    resource = {
        "resourceType": "ConceptMap",
        "status": "active",
        "group": [
            {
                "target": OUTCOME_SYSTEM,
                "element": [{"code": "DIED", "target": [{"code": "died", "equivalence": "equal"}]}],
            }
        ],
    }
    table = build_code_maps([resource]).outcomes
    assert table.lookup("urn:oid:1.2.3", "died") is not None
    assert table.lookup(None, "Died") is not None


@pytest.mark.parametrize(
    "bad",
    [
        site_map(element("X3", "not_a_variable")),
        site_map(element("X4", "heart_rate", unit="mg/dL")),
        site_map(element("X5", "sodium"), element("X5", "chloride")),
        {"resourceType": "ConceptMap", "group": [{"element": []}]},
        {"resourceType": "ValueSet"},
    ],
)
def test_a_malformed_site_map_is_refused_at_load(bad: dict[str, Any]) -> None:
    with pytest.raises(ConceptMapError):
        build_code_maps([bad])


@given(st.lists(st.sampled_from(VARIABLES), min_size=1, max_size=5))
def test_merging_maps_keeps_the_last_target_of_each_code(targets: list[str]) -> None:
    maps = build_code_maps([site_map(element("Z", t)) for t in targets])
    assert maps.variables.lookup(LOCAL, "Z").target_code == targets[-1]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "itemid",
    # mimic-code, mimic-iv/concepts/measurement/urine_output.sql (GU irrigation left out:
    # the concept subtracts its volume in, which a code map cannot express)
    ["226559", "226560", "226561", "226584", "226563", "226564", "226565", "226567",
     "226557", "226558"],
)  # fmt: skip
def test_every_urine_item_of_the_mimic_urine_output_concept_is_mapped(itemid: str) -> None:
    assert only_event(mimic_observation(OUTPUT, itemid, 120, "ml")) == ("urine_output", 120.0)


def test_gu_irrigation_is_left_unmapped() -> None:
    for itemid in ("227488", "227489"):
        events, _ = map_observation(mimic_observation(OUTPUT, itemid, 500, "ml"))
        assert events == []  # counted as an unmapped code in the run's data quality
