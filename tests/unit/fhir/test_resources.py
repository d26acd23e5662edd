"""Structural validation with fhir.resources R4B, and golden round-trips of HL7 examples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dipro_fhir.core.errors import InvalidResource
from dipro_fhir.fhir.bench_parse import measure, synthetic_observation
from dipro_fhir.fhir.resources import round_trip, validate_many, validate_resource

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "fhir-golden"
GOLDEN_FILES = sorted(GOLDEN.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_golden_folder_is_not_empty() -> None:
    assert len(GOLDEN_FILES) >= 5


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_hl7_example_round_trips_unchanged(path: Path) -> None:
    raw = _load(path)
    dumped = round_trip(raw)
    assert dumped == raw
    assert round_trip(dumped) == dumped


def test_r4_only_field_survives_where_r5_models_would_rename_it() -> None:
    # Encounter.class is one Coding in R4 (a list of CodeableConcepts in R5).
    encounter = _load(GOLDEN / "Encounter-example.json")
    assert isinstance(round_trip(encounter)["class"], dict)


def test_invalid_resource_reason_names_the_path_but_not_the_value() -> None:
    obs = _load(GOLDEN / "Observation-example.json")
    obs["valueQuantity"]["value"] = "SECRET-VALUE"
    with pytest.raises(InvalidResource, match=r"Observation\.valueQuantity\.value") as info:
        validate_resource(obs)
    assert "SECRET-VALUE" not in str(info.value)


def test_missing_required_element_and_unknown_type_are_invalid() -> None:
    obs = _load(GOLDEN / "Observation-example.json")
    del obs["status"]
    with pytest.raises(InvalidResource, match="status"):
        validate_resource(obs)
    with pytest.raises(InvalidResource, match="unknown resourceType"):
        validate_resource({"resourceType": "NoSuchThing"})
    with pytest.raises(InvalidResource, match="no resourceType"):
        validate_resource({"id": "x"})


def test_validate_many_keeps_order_of_valid_and_reports_each_invalid() -> None:
    good = [synthetic_observation(i) for i in range(3)]
    bad = copy.deepcopy(good[1])
    bad["id"] = "broken"
    bad["bogusField"] = 1
    valid, issues = validate_many([good[0], bad, good[1], good[2]])
    assert [r["id"] for r in valid] == ["bench-0", "bench-1", "bench-2"]
    assert len(issues) == 1
    assert issues[0].code == "invalid-resource"
    assert issues[0].resource == "Observation/broken"
    assert "bogusField" in issues[0].detail


def test_benchmark_measures_both_rates() -> None:
    rates = measure(200)
    assert rates.count == 200
    assert rates.json_only_per_s > rates.validated_per_s > 0
