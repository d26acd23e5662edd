"""The mapped patient: what the data plane hands to scoring.

A :class:`PatientTimeline` is everything DiPro needs about one patient as of one time, in our
own types (never FHIR models or dicts of dicts), plus the provenance of every resource used
and every data problem met on the way. Arrays are NumPy; the scoring step turns a list of
timelines into the network's batch.

Time base: the observation window is ``[as_of - window_hours, as_of)``; hour ``h`` of the
EHR grid is the bin ``[window_start + h, window_start + h + 1)``. CXR hours are measured from
the same ``window_start`` and are negative for earlier CXRs kept for longitudinal context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NewType

import numpy as np
import numpy.typing as npt

PatientId = NewType("PatientId", str)
EncounterId = NewType("EncounterId", str)
RunId = NewType("RunId", str)

#: Whose data problems belong to no patient that can be told (stored as an empty id).
NO_PATIENT = PatientId("")

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """A FHIR resource used as input: ``Observation/abc`` at version ``3``."""

    resource_type: str
    id: str
    version: str | None = None

    @property
    def reference(self) -> str:
        """The relative FHIR reference, ``Type/id``."""
        return f"{self.resource_type}/{self.id}"


@dataclass(frozen=True, slots=True)
class MappingIssue:
    """One data problem met while extracting or mapping a patient.

    Attributes:
        code: A stable, machine-readable code (``unknown-unit``, ``invalid-resource``,
            ``image-missing``, ``corrupt-dicom``, ``out-of-range`` ...). Stored and counted.
        resource: The offending resource (``Observation/abc``) or image
            (``instance/<SOPInstanceUID>``), when there is one.
        detail: A short explanation without patient data (no names, values are allowed).
    """

    code: str
    resource: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ObservationEvent:
    """One usable measurement of one DiPro variable, in the variable's canonical unit."""

    variable: str
    value: float
    effective: datetime
    source: ResourceRef


Float16Array = npt.NDArray[np.float16]


@dataclass(frozen=True, slots=True)
class RegionFeatures:
    """A CXR's pooled backbone features, reused from the feature cache.

    Attributes:
        values: float16 ``[R, F]``, one feature vector per region (``dipro`` region order).
        weights_digest: Digest of the backbone weights that computed them.
    """

    values: Float16Array
    weights_digest: str


@dataclass(frozen=True, slots=True)
class ImageEvent:
    """One frontal chest radiograph, located and cropped.

    Attributes:
        acquired: Acquisition time (timezone-aware, UTC).
        hours_since_window_start: ``(acquired - window_start)`` in hours; negative for
            context CXRs before the window.
        crops: float32 ``[R, 1, H, W]`` in ``[0, 1]``, region order of ``dipro.vocab.REGIONS``;
            all zeros where a region could not be placed. Empty (``H = W = 0``) when the
            image was not read because its features came from the cache (``features``).
        region_mask: bool ``[R]``; ``False`` where the locator could not place the region.
        features: Cached backbone features, when the image was not read again.
        boxes: float32 ``[R, 4]`` region boxes ``(x0, y0, x1, y1)`` in pixels, NaN where a
            region is missing; ``None`` when unknown.
        qc: The image's QC verdict: ``(code, detail)`` of the data problems it raised.
        preprocessing: The preprocessing version that made the crops (feature-cache key).
    """

    study_uid: str
    series_uid: str
    instance_uid: str
    acquired: datetime
    hours_since_window_start: float
    crops: FloatArray
    region_mask: BoolArray
    view_position: str
    imaging_study: ResourceRef | None = None
    features: RegionFeatures | None = None
    boxes: FloatArray | None = None
    qc: tuple[tuple[str, str], ...] = ()
    preprocessing: str = ""


@dataclass(frozen=True, slots=True)
class PatientTimeline:
    """One patient as of one time, ready for scoring.

    Attributes:
        ehr_values: float32 ``[T, V]`` in canonical units; the last value observed in each
            hourly bin, ``NaN`` where nothing was observed (``ehr_mask`` False).
        ehr_mask: bool ``[T, V]``; ``True`` where a value was observed in that bin.
        ehr_hours: float32 ``[T]``; hours since ``window_start`` of each bin's start.
        demographics: float32 ``[17]`` in ``dipro.vocab.DEMOGRAPHIC_COLUMNS`` order; age in
            years, height in cm, weight in kg (``NaN`` when unknown), then one-hot groups.
        images: CXRs sorted by acquisition time, oldest first.
        provenance: Every resource the timeline was built from, sorted, without repeats.
        issues: Every data problem met, in the order found.
        stay_start: Start of the encounter scored (``Encounter.period.start``), when known;
            the length-of-stay prediction is about the stay that began then.
    """

    patient_id: PatientId
    encounter_id: EncounterId | None
    as_of: datetime
    window_start: datetime
    ehr_values: FloatArray
    ehr_mask: BoolArray
    ehr_hours: FloatArray
    demographics: FloatArray
    images: tuple[ImageEvent, ...] = ()
    provenance: tuple[ResourceRef, ...] = ()
    issues: tuple[MappingIssue, ...] = field(default_factory=tuple)
    stay_start: datetime | None = None
