"""Patient -> the 17 DiPro demographic columns."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dipro.vocab import DEMOGRAPHIC_COLUMNS
from dipro_fhir.mapping.demographics import age_years, encode_demographics

DATA = Path(__file__).resolve().parents[2] / "data" / "fhir"
AS_OF = datetime(2026, 6, 30, 12, tzinfo=UTC)
RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
OMB = "urn:oid:2.16.840.1.113883.6.238"


def omb(url: str, *codes: str) -> dict[str, Any]:
    subs = [{"url": "ombCategory", "valueCoding": {"system": OMB, "code": c}} for c in codes]
    return {"url": url, "extension": subs}


def hot(patient: dict[str, Any]) -> set[str]:
    vector, _ = encode_demographics(patient, AS_OF, 170.0, 80.0)
    pairs = list(zip(DEMOGRAPHIC_COLUMNS, vector, strict=True))[3:]
    return {name for name, v in pairs if v == 1.0}


def test_hl7_patient_f001_encodes_male_married_other_language() -> None:
    patient = json.loads((DATA / "Patient-f001.json").read_text())
    vector, issues = encode_demographics(patient, AS_OF, 180.5, 79.0)
    assert vector.dtype.name == "float32"
    assert vector.shape == (17,)
    assert vector[:3].tolist() == [81.0, 180.5, 79.0]  # born 1944-11-17
    assert hot(patient) == {
        "gender_M",
        "race_UNKNOWN/UNABLE TO OBTAIN/PATIENT DECLINED TO ANSWER",
        "language_?",
        "marital_MARRIED",
    }
    assert issues == []


def test_missing_marital_status_and_unknown_height_are_visible() -> None:
    patient = json.loads((DATA / "Patient-example.json").read_text())
    vector, issues = encode_demographics(patient, AS_OF, None, float("nan"))
    assert vector[0] == 51.0  # born 1974-12-25
    assert math.isnan(vector[1])
    assert math.isnan(vector[2])
    assert [(i.code, i.detail) for i in issues] == [("missing-demographic", "maritalStatus")]
    assert not any(c.startswith("marital_") for c in hot(patient))


@pytest.mark.parametrize(
    ("birth", "age"),
    [("1974", 51.0), ("1974-12", 51.0), ("1974-06", 52.0), ("2000-06-30", 26.0),
     ("2000-07-01", 25.0), ("2027", None), ("garbage", None), (None, None)],
)  # fmt: skip
def test_age_handles_partial_birth_dates(birth: str | None, age: float | None) -> None:
    assert age_years(birth, AS_OF) == age


@pytest.mark.parametrize(
    ("extensions", "bucket"),
    [
        ([omb(RACE, "2106-3")], "race_WHITE"),
        ([omb(RACE, "2054-5")], "race_BLACK/AFRICAN AMERICAN"),
        ([omb(RACE, "2028-9")], "race_ASIAN"),
        ([omb(RACE, "2106-3"), omb(ETHNICITY, "2135-2")], "race_HISPANIC/LATINO"),
        ([omb(RACE, "1002-5")], "race_OTHER"),
        ([omb(RACE, "2106-3", "2054-5")], "race_OTHER"),
        ([], "race_UNKNOWN/UNABLE TO OBTAIN/PATIENT DECLINED TO ANSWER"),
    ],
)
def test_race_buckets_from_us_core_extensions(
    extensions: list[dict[str, Any]], bucket: str
) -> None:
    races = {c for c in hot({"extension": extensions}) if c.startswith("race_")}
    assert races == {bucket}


@pytest.mark.parametrize(
    ("code", "column"),
    [("M", "marital_MARRIED"), ("D", "marital_DIVORCED"), ("S", "marital_SINGLE"),
     ("U", "marital_SINGLE"), ("W", "marital_WIDOWED"), ("L", "marital_DIVORCED")],
)  # fmt: skip
def test_marital_status_table(code: str, column: str) -> None:
    patient = {"maritalStatus": {"coding": [{"code": code}]}}
    assert {c for c in hot(patient) if c.startswith("marital_")} == {column}


def test_english_language_and_gender_other() -> None:
    patient = {
        "gender": "other",
        "communication": [
            {"language": {"coding": [{"code": "de"}]}},
            {"language": {"coding": [{"code": "en-US"}]}, "preferred": True},
        ],
    }
    columns = hot(patient)
    assert "language_ENGLISH" in columns
    assert not {"gender_F", "gender_M"} & columns


def test_each_one_hot_group_has_at_most_one_column_set() -> None:
    vector, _ = encode_demographics({"gender": "female"}, AS_OF, None, None)
    groups = ("gender_", "race_", "language_", "marital_")
    for prefix in groups:
        total = sum(
            v for n, v in zip(DEMOGRAPHIC_COLUMNS, vector, strict=True) if n.startswith(prefix)
        )
        assert total <= 1.0
