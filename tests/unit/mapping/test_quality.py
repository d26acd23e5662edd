"""The data-quality summary: counts that merge, round-trip, compare, and hold no patient data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dipro.vocab import VARIABLES
from dipro_fhir.core.timeline import MappingIssue, PatientId
from dipro_fhir.mapping.quality import (
    NO_CODE,
    DataQuality,
    compare,
    render_quality,
    timeline_quality,
    unmapped_quality,
)
from dipro_fhir.mapping.timeline import build_timeline

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
counts = st.dictionaries(st.sampled_from(["a|1", "b|2", "c|3", NO_CODE]), st.integers(1, 50))
variables = st.dictionaries(st.sampled_from(VARIABLES[:6]), st.integers(1, 5))
reasons = st.dictionaries(st.sampled_from(["image-missing", "corrupt-dicom"]), st.integers(1, 5))
summaries = st.builds(
    DataQuality,
    patients=st.integers(5, 9),
    unmapped_codes=counts,
    variable_patients=variables,
    image_problems=reasons,
    unattributed_problems=reasons,
    image_flags=st.dictionaries(st.just("regions-from-thorax"), st.integers(1, 5)),
)


@given(summaries, summaries, summaries)
def test_merging_is_associative_and_commutative(
    a: DataQuality, b: DataQuality, c: DataQuality
) -> None:
    assert a.merged(b).merged(c) == a.merged(b.merged(c))
    assert a.merged(b).to_json() == b.merged(a).to_json()
    assert a.merged(DataQuality()) == a


@given(summaries)
def test_json_round_trip(quality: DataQuality) -> None:
    assert DataQuality.from_json(json.loads(json.dumps(quality.to_json()))) == quality


@given(summaries, summaries)
def test_compare_reports_new_codes_and_coverage_moves(now: DataQuality, then: DataQuality) -> None:
    change = compare(now, then, "run-previous")
    assert set(change.new_unmapped_codes) == set(now.unmapped_codes) - set(then.unmapped_codes)
    assert change.unmapped_change == now.unmapped_observations - then.unmapped_observations
    for variable, delta in change.coverage_change.items():
        assert abs(delta - (now.coverage()[variable] - then.coverage()[variable])) < 1e-3
    assert compare(now, now, "x").coverage_change == {}


def _observation(code: str | None, patient: str, display: str = "") -> dict[str, Any]:
    coding = [{"system": "https://hospital.example.org/lab", "code": code, "display": display}]
    return {
        "resourceType": "Observation",
        "id": f"o-{patient}-{code}",
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": coding if code else [], "text": "free text of a person"},
    }


def test_unmapped_codes_are_counted_per_first_coding_without_patient_data() -> None:
    observations = [
        _observation("NA", "alice-mrn-123", "Natrium"),
        _observation("NA", "bob-mrn-456"),
        _observation(None, "carol-mrn-789"),
    ]
    quality = unmapped_quality(observations)
    assert dict(quality.unmapped_codes) == {
        "https://hospital.example.org/lab|NA": 2,
        NO_CODE: 1,
    }
    text = json.dumps(quality.to_json()) + render_quality(quality)
    for private in ("alice", "bob", "carol", "mrn", "free text"):
        assert private not in text
    assert "Natrium" in text


def test_coverage_and_image_problems_come_from_the_timeline() -> None:
    heart_rate = {
        "resourceType": "Observation",
        "id": "hr",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "effectiveDateTime": (AS_OF - timedelta(hours=3)).isoformat(),
        "valueQuantity": {"value": 90, "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    timeline = build_timeline(
        PatientId("p"),
        None,
        AS_OF,
        {"resourceType": "Patient", "id": "p"},
        [heart_rate],
        (),
        extra_issues=[
            MappingIssue("image-missing", "study/1.2.3"),
            MappingIssue("regions-partial", "instance/1.2.3.4"),  # usable: not counted
            MappingIssue("regions-from-thorax", "instance/1.2.3.5"),  # used, flagged
        ],
    )
    quality = timeline_quality(timeline).merged(DataQuality(patients=1))
    assert quality.coverage()["heart_rate"] == 0.5
    assert quality.coverage()["sodium"] == 0.0
    assert dict(quality.image_problems) == {"image-missing": 1}
    assert dict(quality.image_flags) == {"regions-from-thorax": 1}
    assert "images flagged  regions-from-thorax 1" in render_quality(quality)
