"""Cohort rules, Lists, code scans and ConceptMaps by URL on the reference server (HAPI).

The same resources go into HAPI (which checks every reference on write) and, exported as
the server stored them, into NDJSON files; the cohort answers must agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dipro_fhir.fhir import FhirClient, FhirSource, HttpFhirSource, NdjsonFhirSource
from dipro_fhir.fhir.cohort import CohortRule
from dipro_fhir.fhir.concept_maps import load_code_maps
from dipro_fhir.mapping.code_maps import build_code_maps
from dipro_fhir.mapping.concept_map import ACT_CODE_SYSTEM, VARIABLE_SYSTEM
from tests.unit.fhir.test_cohort_rules import AS_OF, MIMIC_CLASS, ROLE_CODE, encounter, location

from .conftest import transaction as make_transaction

pytestmark = pytest.mark.integration
TYPES = ("Patient", "Encounter", "Location", "List", "Observation")
LOCAL = "https://hospital.example.org/CodeSystem/lab"
MAP_URL = "https://hospital.example.org/ConceptMap/lab"


#: MIMIC-IV on FHIR's Locations carry a name and a physicalType, no type.
MIMIC_MICU = {
    "resourceType": "Location",
    "id": "micu",
    "status": "active",
    "name": "Medical Intensive Care Unit (MICU)",
    "physicalType": {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "wa"}
        ]
    },
}


def _resources() -> list[dict[str, Any]]:
    return [
        location("tsicu", "ICU"),
        location("ward7", "HU"),
        # A typed Location is decided by its type, whatever its name.
        {**location("stepdown", "HU"), "name": "ICU step-down"},
        MIMIC_MICU,
        *({"resourceType": "Patient", "id": f"pt-{p}"} for p in "abcde"),
        encounter("a-imp", "pt-a"),
        encounter("b-hosp", "pt-b", klass=(MIMIC_CLASS, "EW EMER.")),
        encounter(
            "b-icu",
            "pt-b",
            klass=(ACT_CODE_SYSTEM, "ACUTE"),
            days=(-1, None),
            locations=(("tsicu", -1, None),),
            part_of="b-hosp",
        ),
        encounter(
            "c-local", "pt-c", klass=(MIMIC_CLASS, "URGENT"), locations=(("ward7", -2, None),)
        ),
        encounter("d-micu", "pt-d", klass=(MIMIC_CLASS, "URGENT"), locations=(("micu", -1, None),)),
        encounter(
            "e-step", "pt-e", klass=(MIMIC_CLASS, "URGENT"), locations=(("stepdown", -1, None),)
        ),
        {
            "resourceType": "List",
            "id": "tonight",
            "status": "current",
            "mode": "working",
            "entry": [
                {"item": {"reference": "Encounter/b-icu"}},
                {"item": {"reference": "Patient/pt-c"}},
            ],
        },
        {
            "resourceType": "Observation",
            "id": "local-k",
            "status": "final",
            "code": {"coding": [{"system": LOCAL, "code": "K+", "display": "Kalium"}]},
            "subject": {"reference": "Patient/pt-a"},
            "effectiveDateTime": AS_OF.isoformat(),
            "valueQuantity": {"value": 4.1, "unit": "mmol/L"},
        },
    ]


@pytest.fixture(params=["http", "ndjson"])
def source(
    request: pytest.FixtureRequest,
    fhir_base_url: str,
    make_client: Callable[..., FhirClient],
    tmp_path: Path,
) -> FhirSource:
    client = make_client(fhir_base_url, page_size=5)
    client.transaction(make_transaction(_resources()), idempotent=True)
    if request.param == "http":
        return HttpFhirSource(client)
    for resource_type in TYPES:
        lines = [json.dumps(r) + "\n" for r in client.search(resource_type, {})]
        (tmp_path / f"{resource_type}.ndjson").write_text("".join(lines))
    return NdjsonFhirSource(tmp_path)


def _class_map() -> Any:
    resource = {
        "resourceType": "ConceptMap",
        "status": "active",
        "group": [
            {
                "source": MIMIC_CLASS,
                "target": ACT_CODE_SYSTEM,
                "element": [
                    {"code": "URGENT", "target": [{"code": "IMP", "equivalence": "equivalent"}]}
                ],
            }
        ],
    }
    return build_code_maps([resource]).classes


def test_class_rules_on_both_sources(source: FhirSource) -> None:
    assert list(source.active_encounter_patients(AS_OF)) == [("pt-a", "a-imp"), ("pt-b", "b-icu")]
    mapped = CohortRule(class_map=_class_map())
    assert list(source.active_encounter_patients(AS_OF, mapped)) == [
        ("pt-a", "a-imp"),
        ("pt-b", "b-icu"),
        ("pt-c", "c-local"),
        ("pt-d", "d-micu"),
        ("pt-e", "e-step"),
    ]


def test_location_rule_on_both_sources(
    source: FhirSource, caplog: pytest.LogCaptureFixture
) -> None:
    rule = CohortRule(kind="location", location_types=(f"{ROLE_CODE}|ICU",))
    # The typed ICU and the untyped MIMIC unit named "Intensive Care"; not the typed step-down.
    assert list(source.active_encounter_patients(AS_OF, rule)) == [
        ("pt-b", "b-icu"),
        ("pt-d", "d-micu"),
    ]
    types_only = CohortRule(kind="location", location_types=("ICU",), location_names=())
    assert list(source.active_encounter_patients(AS_OF, types_only)) == [("pt-b", "b-icu")]
    nothing = CohortRule(kind="location", location_types=("NICU",), location_names=("burns",))
    with caplog.at_level("WARNING"):
        assert list(source.active_encounter_patients(AS_OF, nothing)) == []
    assert any("no Location matches" in r.getMessage() for r in caplog.records)


def test_list_members_on_both_sources(source: FhirSource) -> None:
    assert source.list_members("tonight") == [("pt-b", "b-icu"), ("pt-c", None)]


def test_scan_observations_sees_every_code(source: FhirSource) -> None:
    codes = [o["code"]["coding"][0]["code"] for o in source.scan_observations()]
    assert codes == ["K+"]


def test_a_concept_map_is_loaded_from_the_server_by_canonical_url(
    fhir_base_url: str, make_client: Callable[..., FhirClient]
) -> None:
    client = make_client(fhir_base_url)
    for version, variable in (("1", "sodium"), ("2", "potassium")):
        client.put(
            {
                "resourceType": "ConceptMap",
                "id": f"lab-v{version}",
                "url": MAP_URL,
                "version": version,
                "status": "active",
                "group": [
                    {
                        "source": LOCAL,
                        "target": VARIABLE_SYSTEM,
                        "element": [
                            {
                                "code": "K+",
                                "target": [{"code": variable, "equivalence": "equivalent"}],
                            }
                        ],
                    }
                ],
            }
        )
    latest = load_code_maps(("loinc",), urls=(MAP_URL,), client=client)
    assert latest.variable_of(LOCAL, "K+").spec.name == "potassium"  # type: ignore[union-attr]
    pinned = load_code_maps(("loinc",), urls=(f"{MAP_URL}|1",), client=client)
    assert pinned.variable_of(LOCAL, "K+").spec.name == "sodium"  # type: ignore[union-attr]
