"""Mortality labels on data shaped like MIMIC-IV on FHIR: dates, dispositions, ICU stays."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dipro_fhir.mapping.code_maps import build_code_maps, builtin_concept_map
from dipro_fhir.mapping.concept_map import OUTCOME_SYSTEM
from dipro_fhir.mapping.labels import (
    LabelRules,
    admission_chain,
    death_period,
    mortality_label,
    read_labels,
)

MIMIC = "http://mimic.mit.edu/fhir/mimic"
NEW_YORK = ZoneInfo("America/New_York")  # MIMIC-IV times carry -04:00/-05:00 offsets


def patient(deceased: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "mimic-p1",
        "meta": {"profile": [f"{MIMIC}/StructureDefinition/mimic-patient"]},
        "identifier": [{"system": f"{MIMIC}/identifier/patient", "value": "10000032"}],
        "gender": "female",
        "birthDate": "2128-05-06",
    }
    if deceased is not None:
        resource["deceasedDateTime"] = deceased
    return resource


def hospital(start: str, end: str | None, disposition: str | None = None) -> dict[str, Any]:
    """MimicEncounter: a hospital admission with a local admission class (not v3)."""
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": "hosp-1",
        "identifier": [{"system": f"{MIMIC}/identifier/encounter-hosp", "value": "22595853"}],
        "status": "finished",
        "class": {"system": f"{MIMIC}/CodeSystem/mimic-admission-class", "code": "EW EMER."},
        "subject": {"reference": "Patient/mimic-p1"},
        "period": {"start": start, **({"end": end} if end else {})},
    }
    if disposition is not None:
        resource["hospitalization"] = {
            "dischargeDisposition": {
                "coding": [
                    {
                        "system": f"{MIMIC}/CodeSystem/mimic-discharge-disposition",
                        "code": disposition,
                    }
                ]
            }
        }
    return resource


def icu_stay(start: str, end: str, stay_id: str = "icu-1") -> dict[str, Any]:
    """MimicEncounterICU: class v3 ACUTE, ``partOf`` the hospital admission."""
    return {
        "resourceType": "Encounter",
        "id": stay_id,
        "identifier": [{"system": f"{MIMIC}/identifier/encounter-icu", "value": "39553978"}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ACUTE"},
        "subject": {"reference": "Patient/mimic-p1"},
        "period": {"start": start, "end": end},
        "location": [{"location": {"reference": "Location/tsicu"}}],
        "partOf": {"reference": "Encounter/hosp-1"},
    }


RULES = LabelRules(site_tz=NEW_YORK)


def test_a_date_only_death_on_the_day_of_an_evening_admission_is_a_death() -> None:
    # Admitted 20:38 local on 2180-07-14 (00:38 UTC on the 15th); died "2180-07-14".
    admission = hospital("2180-07-14T20:38:00-04:00", None)
    assert mortality_label(patient("2180-07-14"), admission, (), RULES) == 1.0
    # Read as 00:00 UTC, the death would have come before the admission.
    assert death_period(patient("2180-07-14"), NEW_YORK) == (
        datetime(2180, 7, 14, 4, tzinfo=UTC),
        datetime(2180, 7, 15, 4, tzinfo=UTC),
    )


def test_a_date_only_death_the_day_before_admission_is_not_this_stay() -> None:
    admission = hospital("2180-07-14T20:38:00-04:00", "2180-07-20T12:00:00-04:00")
    assert mortality_label(patient("2180-07-13"), admission, (), RULES) == 0.0


@pytest.mark.parametrize("code", ["DIED", "EXPIRED"])
def test_mimic_discharge_dispositions_that_mean_death_are_recognised(code: str) -> None:
    admission = hospital("2180-07-14T20:38:00-04:00", "2180-07-20T12:00:00-04:00", code)
    assert mortality_label(patient(), admission, (), RULES) == 1.0


def test_other_dispositions_say_alive_once_the_stay_ended() -> None:
    admission = hospital("2180-07-14T20:38:00-04:00", "2180-07-20T12:00:00-04:00", "HOME")
    assert mortality_label(patient(), admission, (), RULES) == 0.0


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("http://terminology.hl7.org/CodeSystem/discharge-disposition", "exp"),
        ("https://hospital.example.org/CodeSystem/discharge", "DIED"),
        ("https://hospital.example.org/CodeSystem/discharge", "Verstorben"),
    ],
)
def test_hl7_exp_and_common_local_codes_default_to_death(system: str, code: str) -> None:
    encounter = hospital("2180-07-14T20:38:00-04:00", "2180-07-20T12:00:00-04:00")
    encounter["hospitalization"] = {
        "dischargeDisposition": {"coding": [{"system": system, "code": code}]}
    }
    assert mortality_label(patient(), encounter, (), RULES) == 1.0


def test_a_site_concept_map_adds_its_own_disposition_code() -> None:
    site = {
        "resourceType": "ConceptMap",
        "status": "active",
        "group": [
            {
                "source": "https://hospital.example.org/CodeSystem/discharge",
                "target": OUTCOME_SYSTEM,
                "element": [{"code": "07", "target": [{"code": "died", "equivalence": "equal"}]}],
            }
        ],
    }
    outcomes = build_code_maps([builtin_concept_map("discharge-disposition"), site]).outcomes
    encounter = hospital("2180-07-14T20:38:00-04:00", "2180-07-20T12:00:00-04:00")
    encounter["hospitalization"] = {
        "dischargeDisposition": {
            "coding": [
                {"system": "https://hospital.example.org/CodeSystem/discharge", "code": "07"}
            ]
        }
    }
    assert mortality_label(patient(), encounter, (), LabelRules(NEW_YORK, outcomes)) == 1.0
    assert mortality_label(patient(), encounter, (), RULES) == 0.0


def test_an_icu_stay_takes_the_outcome_of_its_fatal_hospital_admission() -> None:
    # The ICU stay ended days before the death; the admission ended with DIED.
    admission = hospital("2180-07-14T20:38:00-04:00", "2180-07-30T09:00:00-04:00", "DIED")
    stay = icu_stay("2180-07-15T01:00:00-04:00", "2180-07-19T14:00:00-04:00")
    encounters = [admission, stay]
    assert admission_chain(stay, encounters) == [stay, admission]
    assert mortality_label(patient(), stay, encounters, RULES) == 1.0
    # Without the admission the stay alone looked like a survival.
    assert mortality_label(patient(), stay, (), RULES) == 0.0


def test_an_icu_stay_takes_a_death_dated_inside_the_admission_not_the_stay() -> None:
    admission = hospital("2180-07-14T20:38:00-04:00", "2180-07-30T09:00:00-04:00")
    stay = icu_stay("2180-07-15T01:00:00-04:00", "2180-07-19T14:00:00-04:00")
    labels = read_labels(patient("2180-07-30"), stay, [], [], [admission, stay], RULES)
    assert labels.mortality == 1.0
    assert labels.los_bin == 2  # the ICU stay's own 4.5 days: [4, 6)


def test_an_icu_stay_of_an_admission_still_under_way_has_no_outcome_yet() -> None:
    admission = hospital("2180-07-14T20:38:00-04:00", None)
    stay = icu_stay("2180-07-15T01:00:00-04:00", "2180-07-19T14:00:00-04:00")
    assert mortality_label(patient(), stay, [admission, stay], RULES) is None


def test_a_partof_cycle_does_not_loop() -> None:
    a = icu_stay("2180-07-15T01:00:00-04:00", "2180-07-19T14:00:00-04:00", "a")
    b = icu_stay("2180-07-15T01:00:00-04:00", "2180-07-19T14:00:00-04:00", "b")
    a["partOf"], b["partOf"] = {"reference": "Encounter/b"}, {"reference": "Encounter/a"}
    assert [e["id"] for e in admission_chain(a, [a, b])] == ["a", "b"]


@given(st.integers(min_value=0, max_value=23), st.integers(min_value=0, max_value=59))
def test_a_death_on_the_admission_day_counts_whatever_the_admission_hour(
    hour: int, minute: int
) -> None:
    start = f"2180-07-14T{hour:02d}:{minute:02d}:00-04:00"
    assert mortality_label(patient("2180-07-14"), hospital(start, None), (), RULES) == 1.0
