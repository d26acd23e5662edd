"""RiskAssessment, Device and Provenance building: codes, ids, scale, basis bound, labels."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dipro_fhir.core.errors import InvalidResource
from dipro_fhir.core.risk import RiskThresholds, classify_risk
from dipro_fhir.core.scores import ModelInfo, Score, outcomes_for
from dipro_fhir.core.timeline import ResourceRef
from dipro_fhir.fhir.resources import round_trip, validate_resource
from dipro_fhir.writeback import codes
from dipro_fhir.writeback.assessment import (
    EHR_ONLY_NOTE,
    AssessmentOptions,
    check_risk_assessment,
    select_basis,
    to_provenance,
    to_risk_assessment,
)
from dipro_fhir.writeback.transparency import to_device

from .scores import AS_OF, patient_scores


def _task(scores: list[Score], task: str) -> list[Score]:
    return [s for s in scores if s.task == task]


def test_mortality_assessment_is_labelled_coded_and_valid() -> None:
    ra = to_risk_assessment(_task(patient_scores("p1"), "mortality"))
    check_risk_assessment(ra)
    assert ra["status"] == "final"
    assert ra["subject"] == {"reference": "Patient/p1"}
    assert ra["encounter"] == {"reference": "Encounter/p1-enc"}
    assert ra["occurrenceDateTime"] == "2026-11-24T02:00:00Z"
    assert {"system": codes.AI_LABEL_SYSTEM, "code": "AIAST"}.items() <= ra["meta"]["security"][
        0
    ].items()
    (prediction,) = ra["prediction"]
    assert prediction["outcome"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "419099009",
        "display": "Dead",
    }
    assert prediction["whenPeriod"] == {"start": "2026-11-24T02:00:00Z"}
    assert ra["method"]["text"] == "dipro 1.0.0"
    assert ra["performer"]["reference"] == f"Device/{codes.device_id('dipro', '1.0.0')}"


def test_probability_is_percent_by_default_and_fraction_on_request() -> None:
    scores = _task(patient_scores("p1"), "mortality")
    percent = to_risk_assessment(scores)["prediction"][0]["probabilityDecimal"]
    fraction = to_risk_assessment(scores, AssessmentOptions(probability_scale="fraction"))
    assert percent == pytest.approx(scores[0].probability * 100, abs=1e-4)
    assert fraction["prediction"][0]["probabilityDecimal"] == pytest.approx(
        scores[0].probability, abs=1e-6
    )


def test_ras2_rejects_a_percentage_above_100() -> None:
    ra = to_risk_assessment(_task(patient_scores("p1"), "mortality"))
    ra["prediction"][0]["probabilityDecimal"] = 100.5
    with pytest.raises(InvalidResource, match="ras-2"):
        check_risk_assessment(ra)
    ra["prediction"][0]["probabilityDecimal"] = 1.5
    with pytest.raises(InvalidResource, match="fraction"):
        check_risk_assessment(ra, "fraction")


def test_predictions_follow_task_outcome_order_with_project_codes() -> None:
    scores = _task(patient_scores("p1"), "progression")
    ra = to_risk_assessment(list(reversed(scores)))
    got = [p["outcome"]["coding"][0]["code"] for p in ra["prediction"]]
    expected = [
        o.replace(":", "-").replace("no_change", "no-change") for o in outcomes_for("progression")
    ]
    assert got == expected
    first = ra["prediction"][0]
    assert {e["url"] for e in first["extension"]} == {
        codes.FINDING_EXTENSION,
        codes.CHANGE_EXTENSION,
    }
    assert "whenPeriod" not in first
    los = to_risk_assessment(_task(patient_scores("p1"), "los"))
    assert [p["outcome"]["coding"][0]["system"] for p in los["prediction"]] == [
        codes.LOS_SYSTEM
    ] * 4


def test_id_and_identifier_are_deterministic_and_differ_by_model_version() -> None:
    scores = _task(patient_scores("p1"), "mortality")
    again = to_risk_assessment(scores)
    assert to_risk_assessment(scores) == again
    v2 = [dataclasses.replace(s, model_version="2.0.0") for s in scores]
    other = to_risk_assessment(v2)
    assert other["id"] != again["id"]
    assert other["identifier"][0]["value"] != again["identifier"][0]["value"]
    later = [dataclasses.replace(s, as_of=AS_OF + timedelta(days=1)) for s in scores]
    assert to_risk_assessment(later)["id"] != again["id"]
    assert len(again["id"]) <= 64


def test_basis_lists_studies_first_then_latest_observations_within_bound() -> None:
    scores = _task(patient_scores("p1", n_observations=80), "mortality")
    ra = to_risk_assessment(scores, AssessmentOptions(max_basis=10))
    refs = [b["reference"] for b in ra["basis"]]
    assert refs[:2] == ["ImagingStudy/p1-cxr1", "ImagingStudy/p1-cxr0"]
    assert refs[2:] == [f"Observation/p1-obs{i}" for i in range(79, 71, -1)]
    assert {"text": "basis lists 10 of 82 resources used"} in ra["note"]
    assert select_basis([], 50) == []


def test_ehr_only_path_is_noted() -> None:
    ra = to_risk_assessment(_task(patient_scores("p1", path="ehr_only"), "los"))
    assert {"text": EHR_ONLY_NOTE} in ra["note"]
    assert "note" not in to_risk_assessment(_task(patient_scores("p1"), "los"))


def test_scores_of_two_patients_do_not_make_one_assessment() -> None:
    mixed = _task(patient_scores("p1"), "mortality") + _task(patient_scores("p2"), "mortality")
    with pytest.raises(ValueError, match="share"):
        to_risk_assessment(mixed)


def test_device_and_provenance_validate_and_have_stable_ids() -> None:
    device = to_device(ModelInfo("dipro", "1.0.0", "f" * 64))
    validate_resource(device)
    assert device["id"] == codes.device_id("dipro", "1.0.0")
    refs = [ResourceRef("Observation", f"o{i}") for i in range(100)]
    prov = to_provenance("run-1", ["RiskAssessment/a"], f"Device/{device['id']}", refs, AS_OF)
    validate_resource(prov)
    assert len([e for e in prov["entity"] if e["role"] == "source"]) == 50
    again = to_provenance("run-1", ["RiskAssessment/a"], "Device/x", [], AS_OF)
    assert again["id"] == prov["id"]
    assert to_provenance("run-2", ["RiskAssessment/a"], "Device/x", [], AS_OF)["id"] != prov["id"]


def test_risk_levels_follow_thresholds() -> None:
    thresholds = RiskThresholds(0.1, 0.7)
    assert [classify_risk(p, thresholds) for p in (0.05, 0.1, 0.69, 0.7)] == [
        "low",
        "moderate",
        "moderate",
        "high",
    ]
    with pytest.raises(ValueError, match="thresholds"):
        RiskThresholds(0.8, 0.2)


@given(
    probabilities=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
    scale=st.sampled_from(["percent", "fraction"]),
    path=st.sampled_from(["pairs", "ehr_only"]),
)
def test_any_valid_scores_give_a_valid_round_tripping_assessment(
    probabilities: list[float], scale: str, path: str
) -> None:
    base = _task(patient_scores("p1", path=path), "los")
    scores = [
        dataclasses.replace(s, probability=p) for s, p in zip(base, probabilities, strict=True)
    ]
    ra = to_risk_assessment(scores, AssessmentOptions(probability_scale=scale))  # type: ignore[arg-type]
    check_risk_assessment(ra, scale)
    assert round_trip(ra)["prediction"][0]["probabilityDecimal"] == pytest.approx(
        ra["prediction"][0]["probabilityDecimal"]
    )


def test_missing_regions_and_films_left_out_are_noted() -> None:
    from dataclasses import replace

    from dipro_fhir.writeback.assessment import FILMS_NOT_USED_NOTE, REGIONS_MISSING_NOTE

    base = _task(patient_scores("p1"), "mortality")
    scores = [
        replace(s, missing_regions=("right_costophrenic_angle", "left_lung"), images_not_used=2)
        for s in base
    ]
    notes = [n["text"] for n in to_risk_assessment(scores)["note"]]
    assert f"{REGIONS_MISSING_NOTE}: left_lung, right_costophrenic_angle" in notes
    assert f"2 radiograph(s) not used: {FILMS_NOT_USED_NOTE}" in notes
    assert "note" not in to_risk_assessment(base)


def test_the_note_names_which_films_were_left_out_and_why() -> None:
    from dataclasses import replace
    from types import SimpleNamespace

    from dipro_fhir.core.timeline import MappingIssue
    from dipro_fhir.scoring.scorer import films_left_out
    from dipro_fhir.writeback.assessment import FILMS_LEFT_OUT_NOTE, MAX_FILMS_NAMED

    timeline: Any = SimpleNamespace(  # films_left_out reads the timeline's issues only
        issues=(
            MappingIssue("regions-qc-film", "instance/1.2.3", "lung failed"),
            MappingIssue("patient-mismatch", "instance/1.2.4", "another patient"),
            MappingIssue("after-as-of", "instance/1.2.5", "later"),  # not in the window
            MappingIssue("unknown-unit", "Observation/o1", "mg"),  # no film
        )
    )
    left_out = films_left_out(timeline)
    assert left_out == ("instance/1.2.3 (regions-qc-film)", "instance/1.2.4 (patient-mismatch)")
    base = _task(patient_scores("p1"), "mortality")
    notes = [
        n["text"]
        for n in to_risk_assessment([replace(s, films_left_out=left_out) for s in base])["note"]
    ]
    assert f"{FILMS_LEFT_OUT_NOTE}: {'; '.join(left_out)}" in notes
    many = tuple(f"instance/9.{i} (corrupt-dicom)" for i in range(MAX_FILMS_NAMED + 3))
    notes = [
        n["text"]
        for n in to_risk_assessment([replace(s, films_left_out=many) for s in base])["note"]
    ]
    assert any(n.endswith("; and 3 more") for n in notes)


def test_the_note_names_the_films_placed_from_the_thorax_outline() -> None:
    from dataclasses import replace
    from types import SimpleNamespace

    from dipro_fhir.core.timeline import MappingIssue
    from dipro_fhir.scoring.scorer import films_from_thorax
    from dipro_fhir.writeback.assessment import FROM_THORAX_NOTE

    timeline: Any = SimpleNamespace(  # films_from_thorax reads the timeline's issues only
        issues=(
            MappingIssue("regions-from-thorax", "instance/1.2.3", "lung fields refused"),
            MappingIssue("regions-partial", "instance/1.2.4", "missing: left_lung"),
            MappingIssue("regions-from-thorax", "instance/1.2.3", "again"),
        )
    )
    flagged = films_from_thorax(timeline)
    assert flagged == ("instance/1.2.3",)
    base = _task(patient_scores("p1"), "mortality")
    notes = [
        n["text"]
        for n in to_risk_assessment([replace(s, films_from_thorax=flagged) for s in base])["note"]
    ]
    assert f"{FROM_THORAX_NOTE}: instance/1.2.3" in notes
    # The chunk manifests carry it from scoring to the write-back.
    from dipro_fhir.core.manifest import score_from_json, score_to_json

    flagged_score = replace(base[0], films_from_thorax=flagged)
    assert score_from_json(score_to_json(flagged_score)) == flagged_score
