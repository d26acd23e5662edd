"""Cohort rules as hospitals define them: classes (local ones mapped), ICU locations, lists."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dipro_fhir.core.settings import CohortSettings, FhirSettings, MappingSettings, Settings
from dipro_fhir.fhir import NdjsonFhirSource
from dipro_fhir.fhir.cohort import DEFAULT_RULE, CohortRule, current_locations, one_per_patient
from dipro_fhir.mapping.code_maps import build_code_maps
from dipro_fhir.mapping.concept_map import ACT_CODE_SYSTEM
from dipro_fhir.run.pipeline import active_cohort

AS_OF = datetime(2026, 5, 4, 2, tzinfo=UTC)
MIMIC_CLASS = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-admission-class"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"


def encounter(
    eid: str,
    patient: str,
    *,
    klass: tuple[str | None, str] = (ACT_CODE_SYSTEM, "IMP"),
    days: tuple[float, float | None] = (-2, None),
    locations: tuple[tuple[str, float, float | None], ...] = (),
    part_of: str | None = None,
) -> dict[str, Any]:
    def at(d: float) -> str:
        return (AS_OF + timedelta(days=d)).isoformat()

    system, code = klass
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "in-progress" if days[1] is None else "finished",
        "class": {"code": code, **({"system": system} if system else {})},
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": at(days[0]), **({"end": at(days[1])} if days[1] is not None else {})},
        "location": [
            {
                "location": {"reference": f"Location/{loc}"},
                "period": {"start": at(a), **({"end": at(b)} if b is not None else {})},
            }
            for loc, a, b in locations
        ],
    }
    if part_of:
        resource["partOf"] = {"reference": f"Encounter/{part_of}"}
    return resource


def location(lid: str, code: str, system: str = ROLE_CODE) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": lid,
        "status": "active",
        "type": [{"coding": [{"system": system, "code": code}]}],
    }


@pytest.fixture
def export(tmp_path: Path) -> Path:
    def write(resource_type: str, items: list[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(i) + "\n" for i in items)
        (tmp_path / f"{resource_type}.ndjson").write_text(lines)

    write("Patient", [{"resourceType": "Patient", "id": p} for p in "abcdef"])
    write(
        "Encounter",
        [
            # a: an inpatient stay (v3 IMP): today's rule.
            encounter("a-imp", "a"),
            # b: a MIMIC hospital admission (local class) with an ICU stay (ACUTE) inside.
            encounter("b-hosp", "b", klass=(MIMIC_CLASS, "EW EMER.")),
            encounter(
                "b-icu",
                "b",
                klass=(ACT_CODE_SYSTEM, "ACUTE"),
                days=(-1, None),
                locations=(("tsicu", -1, None),),
                part_of="b-hosp",
            ),
            # c: a local class only, in an ICU room since yesterday.
            encounter(
                "c-local",
                "c",
                klass=(MIMIC_CLASS, "URGENT"),
                locations=(("ward7", -2, -1), ("micu", -1, None)),
            ),
            # d: ambulatory, never in the cohort by class; in a ward.
            encounter(
                "d-amb", "d", klass=(ACT_CODE_SYSTEM, "AMB"), locations=(("ward7", -1, None),)
            ),
            # e: an ICU stay that ended before the as-of time.
            encounter("e-icu", "e", locations=(("micu", -3, -1),), days=(-3, -1)),
        ],
    )
    write(
        "Location",
        [
            location("tsicu", "ICU"),
            location("micu", "ICU"),
            location("ward7", "HU"),
            location("oddity", "ICU", "https://hospital.example.org/CodeSystem/unit"),
        ],
    )
    write(
        "Group",
        [
            {
                "resourceType": "Group",
                "id": "icu-board",
                "type": "person",
                "actual": True,
                "member": [{"entity": {"reference": f"Patient/{p}"}} for p in "fd"],
            }
        ],
    )
    write(
        "List",
        [
            {
                "resourceType": "List",
                "id": "tonight",
                "status": "current",
                "mode": "working",
                "entry": [
                    {"item": {"reference": "Encounter/b-icu"}},
                    {"item": {"reference": "Patient/e"}},
                    {"item": {"reference": "Patient/a"}, "deleted": True},
                ],
            }
        ],
    )
    return tmp_path


def class_map(*codes: tuple[str, str]) -> Any:
    resource = {
        "resourceType": "ConceptMap",
        "status": "active",
        "group": [
            {
                "source": MIMIC_CLASS,
                "target": ACT_CODE_SYSTEM,
                "element": [
                    {"code": c, "target": [{"code": t, "equivalence": "equivalent"}]}
                    for c, t in codes
                ],
            }
        ],
    }
    return build_code_maps([resource]).classes


def test_todays_rule_stays_the_default_and_scores_the_innermost_stay(export: Path) -> None:
    source = NdjsonFhirSource(export)
    assert list(source.active_encounter_patients(AS_OF)) == [("a", "a-imp"), ("b", "b-icu")]
    assert list(source.active_encounter_patients(AS_OF, DEFAULT_RULE)) == [
        ("a", "a-imp"),
        ("b", "b-icu"),
    ]


def test_local_classes_count_through_a_concept_map(export: Path) -> None:
    rule = CohortRule(class_map=class_map(("EW EMER.", "IMP"), ("URGENT", "IMP")))
    pairs = list(NdjsonFhirSource(export).active_encounter_patients(AS_OF, rule))
    # b's ICU stay still wins over its (now admitted) hospital admission: innermost first.
    assert pairs == [("a", "a-imp"), ("b", "b-icu"), ("c", "c-local")]
    assert f"{MIMIC_CLASS}|EW EMER." in rule.class_tokens()


def test_icu_by_location_type(export: Path) -> None:
    rule = CohortRule(kind="location", location_types=(f"{ROLE_CODE}|ICU",))
    pairs = list(NdjsonFhirSource(export).active_encounter_patients(AS_OF, rule))
    # b is in the TSICU, c moved to the MICU yesterday, e left the ICU before as-of;
    # the "ICU" code of another system does not count when the token names a system.
    assert pairs == [("b", "b-icu"), ("c", "c-local")]
    earlier = AS_OF - timedelta(days=1, hours=12)
    assert list(NdjsonFhirSource(export).active_encounter_patients(earlier, rule)) == [
        ("e", "e-icu")
    ]


def test_current_locations_follow_the_location_periods() -> None:
    stay = encounter("x", "x", locations=(("ward7", -2, -1), ("micu", -1, None)))
    assert current_locations(stay, AS_OF) == ["micu"]
    assert current_locations(stay, AS_OF - timedelta(days=1, hours=6)) == ["ward7"]


def _settings(export: Path, **cohort: Any) -> Settings:
    return Settings(
        fhir=FhirSettings(ndjson_dir=export),
        cohort=CohortSettings(**cohort),
        mapping=MappingSettings(builtin_maps=("loinc",)),
    )


def test_group_and_list_rules_plan_what_the_hospital_maintains(export: Path) -> None:
    source = NdjsonFhirSource(export)
    group = active_cohort(_settings(export, rule="group", group_id="icu-board"), source, AS_OF)
    assert group == [("f", None), ("d", None)]
    listed = active_cohort(_settings(export, rule="list", list_id="tonight"), source, AS_OF)
    assert listed == [("b", "b-icu"), ("e", None)]


def test_location_rule_from_settings(export: Path) -> None:
    settings = _settings(export, rule="location")
    assert active_cohort(settings, NdjsonFhirSource(export), AS_OF) == [
        ("b", "b-icu"),
        ("c", "c-local"),
    ]


def test_a_group_or_list_rule_without_its_id_is_refused() -> None:
    with pytest.raises(ValueError, match="group_id"):
        CohortSettings(rule="group")
    with pytest.raises(ValueError, match="list_id"):
        CohortSettings(rule="list")


def test_one_per_patient_prefers_the_innermost_then_the_latest() -> None:
    hosp = encounter("h", "p")
    icu = encounter("i", "p", days=(-1, None), part_of="h")
    other = encounter("z", "q", days=(-3, None))
    later = encounter("y", "q", days=(-1, None))
    assert one_per_patient([hosp, icu, other, later]) == [("p", "i"), ("q", "y")]
