"""The pure assembler: no look-ahead, provenance, image checks, issue order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dipro.vocab import VARIABLES
from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.core.timeline import (
    EncounterId,
    ImageEvent,
    MappingIssue,
    PatientId,
    ResourceRef,
)
from dipro_fhir.mapping.timeline import build_timeline, split_known, window_start_for

AS_OF = datetime(2026, 6, 30, 2, 0, tzinfo=UTC)
PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2"},
           "gender": "female", "birthDate": "1950-01-01"}  # fmt: skip
HR = VARIABLES.index("heart_rate")


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def obs(rid: str, loinc: str, value: float, unit: str, effective: datetime,
        issued: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": rid, "meta": {"versionId": "1"}, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "effectiveDateTime": iso(effective),
        "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": unit},
    }  # fmt: skip
    if issued is not None:
        resource["issued"] = iso(issued)
    return resource


def build(observations: list[dict[str, Any]], images: tuple[ImageEvent, ...] = (),
          **kwargs: Any) -> Any:  # fmt: skip
    return build_timeline(
        PatientId("p1"), EncounterId("e1"), AS_OF, PATIENT, observations, images, **kwargs
    )


def image(acquired: datetime, hours: float | None = None, uid: str = "1.2.3") -> ImageEvent:
    start = window_start_for(AS_OF)
    offset = (acquired - start) / timedelta(hours=1) if hours is None else hours
    return ImageEvent(
        "1.2", "1.2.1", uid, acquired, offset,
        np.zeros((10, 1, 4, 4), np.float32), np.ones(10, np.bool_), "AP",
        ResourceRef("ImagingStudy", "is1"),
    )  # fmt: skip


def test_window_start_is_as_of_minus_window() -> None:
    assert window_start_for(AS_OF, 48) == AS_OF - timedelta(hours=48)
    with pytest.raises(ValueError, match="timezone"):
        window_start_for(AS_OF.replace(tzinfo=None))


def test_observation_effective_or_issued_after_as_of_never_reaches_the_timeline() -> None:
    before = AS_OF - timedelta(minutes=30)
    resources = [
        obs("ok", "8867-4", 70, "/min", before, issued=before),
        obs("late-effective", "8867-4", 71, "/min", AS_OF),
        obs("late-issued", "8867-4", 72, "/min", before, issued=AS_OF + timedelta(seconds=1)),
    ]
    kept, excluded = split_known(resources, AS_OF)
    assert [r["id"] for r in kept] == ["ok"]
    assert excluded == 2
    timeline = build(resources)
    assert timeline.ehr_values[47, HR] == 70
    assert [r.id for r in timeline.provenance] == ["ok", "p1"]


def test_grid_provenance_and_demographics_from_first_weight() -> None:
    start = window_start_for(AS_OF)
    resources = [
        obs("w2", "29463-7", 80, "kg", start - timedelta(hours=5)),
        obs("w1", "29463-7", 176, "[lb_av]", start - timedelta(hours=30)),
        obs("hr", "8867-4", 88, "/min", start + timedelta(hours=3, minutes=5)),
        obs("bad", "8867-4", 88, "furlong", start + timedelta(hours=4)),
    ]
    timeline = build(resources, extra_issues=[MappingIssue("image-missing", "instance/9")])
    assert timeline.ehr_values.shape == (48, 38)
    assert timeline.ehr_mask.sum() == 1
    assert timeline.ehr_values[3, HR] == 88
    assert timeline.demographics[2] == pytest.approx(176 * 0.45359237)
    # upstream issues first, then observations in input order, then the Patient (no marital)
    assert [i.code for i in timeline.issues] == [
        "image-missing", "unknown-unit", "missing-demographic",
    ]  # fmt: skip
    assert [(r.resource_type, r.id, r.version) for r in timeline.provenance] == [
        ("Observation", "hr", "1"), ("Observation", "w1", "1"), ("Observation", "w2", "1"),
        ("Patient", "p1", "2"),
    ]  # fmt: skip


def test_images_are_sorted_and_checked() -> None:
    late, early = AS_OF - timedelta(hours=2), AS_OF - timedelta(hours=60)
    timeline = build([], (image(late, uid="b"), image(early, uid="a")))
    assert [i.instance_uid for i in timeline.images] == ["a", "b"]
    assert timeline.images[0].hours_since_window_start == -12.0
    assert ResourceRef("ImagingStudy", "is1") in timeline.provenance
    with pytest.raises(ModelContractError):
        build([], (image(late, hours=5.0),))
    with pytest.raises(ModelContractError):
        build([], (image(AS_OF),))


minutes = st.integers(-72 * 60, 24 * 60)


@given(
    effective=st.lists(minutes, min_size=1, max_size=8),
    issued_delay=st.lists(st.integers(0, 48 * 60), min_size=8, max_size=8),
)
def test_no_look_ahead_property(effective: list[int], issued_delay: list[int]) -> None:
    resources = []
    for n, (eff, delay) in enumerate(zip(effective, issued_delay, strict=False)):
        when = AS_OF + timedelta(minutes=eff)
        resources.append(obs(f"o{n}", "8867-4", 60 + n, "/min", when,
                             issued=when + timedelta(minutes=delay)))  # fmt: skip
    timeline = build(resources)
    used = {r.id for r in timeline.provenance if r.resource_type == "Observation"}
    for n, resource in enumerate(resources):
        effective_at = AS_OF + timedelta(minutes=effective[n])
        issued_at = effective_at + timedelta(minutes=issued_delay[n])
        if effective_at >= AS_OF or issued_at > AS_OF:
            assert resource["id"] not in used
            assert (timeline.ehr_values[:, HR] != 60 + n).all()
        elif effective_at >= timeline.window_start:
            assert resource["id"] in used  # known in time: it must not be lost either


def test_issued_rule_keeps_data_loaded_after_the_fact_but_strict_rule_hides_it() -> None:
    from dipro_fhir.mapping.observations import available_at

    late_load = {
        "resourceType": "Observation",
        "issued": "2026-11-20T10:05:00Z",
        "meta": {"lastUpdated": "2026-11-25T09:00:00Z"},
    }
    assert available_at(late_load, "strict") == datetime(2026, 11, 25, 9, tzinfo=UTC)
    assert available_at(late_load, "issued") == datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    no_issued = {"resourceType": "Observation", "meta": {"lastUpdated": "2026-11-25T09:00:00Z"}}
    assert available_at(no_issued, "issued") == datetime(2026, 11, 25, 9, tzinfo=UTC)
