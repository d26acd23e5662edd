"""Assemble a :class:`~dipro_fhir.core.timeline.PatientTimeline` from raw FHIR JSON, as of a time.

No look-ahead: an Observation enters only if its effective time is before ``as_of`` and it
was known by ``as_of`` (:func:`~dipro_fhir.mapping.observations.available_at`, the later of
``issued`` and ``meta.lastUpdated``, at most ``as_of``). Excluded resources are not issues
(they are simply the future); :func:`split_known` returns how many were excluded so it can be
counted and tested. Their issues are excluded too: nothing about the future leaks.

Height and weight for the demographics are the *first* valid value among the kept
observations (reference §1.5: "first valid value during the stay"); the extractor decides how
far back the stay reaches, so values before the 48-hour window count. The EHR grid uses only
the window ``[as_of - window_hours, as_of)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.core.timeline import (
    EncounterId,
    ImageEvent,
    MappingIssue,
    ObservationEvent,
    PatientId,
    PatientTimeline,
    ResourceRef,
)
from dipro_fhir.mapping.binning import bin_hourly
from dipro_fhir.mapping.code_maps import CodeMaps
from dipro_fhir.mapping.demographics import encode_demographics
from dipro_fhir.mapping.observations import (
    available_at,
    effective_time,
    map_observation,
    resource_ref,
)
from dipro_fhir.mapping.times import require_aware

#: Largest allowed gap (hours) between an image's stated and recomputed window offset.
IMAGE_HOURS_TOLERANCE = 1e-3


def window_start_for(as_of: datetime, window_hours: int = 48) -> datetime:
    """The start of the observation window ending at ``as_of`` (``as_of - window_hours``)."""
    require_aware(as_of, "as_of")
    return as_of - timedelta(hours=window_hours)


def split_known(
    resources: Iterable[Mapping[str, Any]], as_of: datetime, availability: str = "strict"
) -> tuple[list[Mapping[str, Any]], int]:
    """Keep the resources known at ``as_of``; return them and how many were excluded.

    A resource is excluded when its effective time is ``>= as_of`` or its availability time
    is ``> as_of`` (read by the ``availability`` rule of
    :func:`~dipro_fhir.mapping.observations.available_at`). A resource whose effective
    time cannot be read is kept so that the mapper records it as ``invalid-resource``.
    """
    require_aware(as_of, "as_of")
    kept: list[Mapping[str, Any]] = []
    excluded = 0
    for resource in resources:
        if not isinstance(resource, Mapping):
            kept.append(resource)
            continue
        when, _ = effective_time(resource)
        known = available_at(resource, availability)
        if (when is not None and when >= as_of) or (known is not None and known > as_of):
            excluded += 1
        else:
            kept.append(resource)
    return kept, excluded


def _first_value(events: Sequence[ObservationEvent], variable: str) -> float | None:
    matching = [e for e in events if e.variable == variable]
    if not matching:
        return None
    first = min(matching, key=lambda e: (e.effective, e.source.id, e.source.version or ""))
    return first.value


def _checked_images(
    images: Sequence[ImageEvent], window_start: datetime, as_of: datetime
) -> tuple[ImageEvent, ...]:
    for image in images:
        require_aware(image.acquired, "ImageEvent.acquired")
        if image.acquired >= as_of:
            raise ModelContractError("an image acquired at or after as_of reached the timeline")
        expected = (image.acquired - window_start) / timedelta(hours=1)
        if abs(expected - image.hours_since_window_start) > IMAGE_HOURS_TOLERANCE:
            raise ModelContractError("ImageEvent.hours_since_window_start disagrees with its time")
    return tuple(sorted(images, key=lambda i: (i.acquired, i.instance_uid)))


def _ref_key(ref: ResourceRef) -> tuple[str, str, str]:
    return (ref.resource_type, ref.id, ref.version or "")


def build_timeline(
    patient_id: PatientId,
    encounter_id: EncounterId | None,
    as_of: datetime,
    patient_resource: Mapping[str, Any],
    observation_resources: Iterable[Mapping[str, Any]],
    images: Sequence[ImageEvent],
    *,
    window_hours: int = 48,
    extra_issues: Iterable[MappingIssue] = (),
    availability: str = "strict",
    stay_start: datetime | None = None,
    maps: CodeMaps | None = None,
) -> PatientTimeline:
    """Build one patient's timeline as of ``as_of`` from raw FHIR JSON; pure, no I/O.

    Args:
        patient_id: Our id of the patient.
        encounter_id: The encounter (stay) scored, if any.
        as_of: The scoring time (timezone-aware); nothing at or after it is used.
        patient_resource: The Patient as FHIR JSON.
        observation_resources: Observations as FHIR JSON, any order.
        images: CXRs already located and cropped, with offsets from ``window_start``.
        window_hours: Length of the EHR window (rows of the grid).
        extra_issues: Issues found upstream (extraction, imaging); they come first.
        availability: How the time a resource became known is read (``strict``/``issued``).
        stay_start: Start of the encounter scored, when known (carried to the timeline).
        maps: The run's code maps (default: the shipped ConceptMaps).

    Raises:
        ValueError: ``as_of`` is naive.
        ModelContractError: An image is after ``as_of`` or its window offset is wrong.
    """
    window_start = window_start_for(as_of, window_hours)
    kept, _excluded = split_known(observation_resources, as_of, availability)
    events: list[ObservationEvent] = []
    issues: list[MappingIssue] = list(extra_issues)
    for resource in kept:
        found, problems = map_observation(resource, maps)
        events.extend(e for e in found if e.effective < as_of)
        issues.extend(problems)
    values, mask, hours = bin_hourly(events, window_start, window_hours)
    demographics, demo_issues = encode_demographics(
        patient_resource, as_of, _first_value(events, "height"), _first_value(events, "weight")
    )
    issues.extend(demo_issues)
    used = {e.source for e in events}
    patient_ref = resource_ref(patient_resource) if isinstance(patient_resource, Mapping) else None
    if patient_ref is not None:
        used.add(patient_ref)
    checked = _checked_images(images, window_start, as_of)
    used.update(i.imaging_study for i in checked if i.imaging_study is not None)
    return PatientTimeline(
        patient_id=patient_id,
        encounter_id=encounter_id,
        as_of=as_of,
        window_start=window_start,
        ehr_values=values,
        ehr_mask=mask,
        ehr_hours=hours,
        demographics=demographics,
        images=checked,
        provenance=tuple(sorted(used, key=_ref_key)),
        issues=tuple(issues),
        stay_start=stay_start,
    )
