"""From a study (or one DICOM object) to an :class:`~dipro_fhir.core.timeline.ImageEvent`.

Decode -> date -> locate the ten regions -> crop (reference §1.6). Data problems become
:class:`~dipro_fhir.core.timeline.MappingIssue` records with stable codes, never exceptions past
the patient:

- ``corrupt-dicom``: the pixels cannot be decoded (truncated file, garbage pixel data);
- ``missing-acquisition-time``: no usable date in the header;
- ``regions-not-found``: the locator placed no region (the film is not used);
- ``regions-qc-film``: quality control (:mod:`dipro_fhir.imaging.qc`) found the placement
  implausible as a whole (the film is not used; detail: the reason code);
- ``regions-qc-failed``: quality control failed some regions (detail: region and checks);
  they go downstream as missing, like regions the locator could not place;
- ``regions-opacified-base``: one lung's base was measured well above the other's (an
  opacity at that base looks like the diaphragm) and its boxes were checked against the
  other lung's base (:func:`~dipro_fhir.imaging.qc_measures.reference_bases`); the film is used;
- ``regions-from-thorax``: the locator's lung fields were refused by quality control as a
  white lung's are (only the apices found, none, or both bases hidden) and the regions were
  placed from the thorax outline instead (:mod:`dipro_fhir.imaging.thorax`; detail: the
  refusal), every region at most ``qc.THORAX_CONFIDENCE``; the film is used;
- ``regions-partial``: the event is produced with some regions missing (detail: which);
  missing regions are zero crops with a False mask, which the model replaces by its
  learnable padding;
- ``image-missing``: the study, series or instance is not on the image source (404);
- ``no-frontal-image``: the study holds no frontal chest radiograph;
- ``image-too-large``: more pixels or bytes than ``limits`` allow (checked from the header
  before the instance is fetched, and again before decoding);
- ``duplicate-sop-instance``: the source holds two objects of one SOP Instance UID
  (a folder; which one is used is documented in :mod:`dipro_fhir.imaging.sources`).

``SourceUnavailable`` and ``AuthError`` are not data problems and propagate.

With a :class:`FeatureLookup` (the shared feature cache), a study whose chosen frontal
instance is cached is not retrieved or decoded: the QIDO/metadata selection still runs, and
the event carries the cached features, mask, boxes and QC verdict instead of crops. A corrupt
cache entry is a ``feature-cache-corrupt`` data problem and the image is read as usual.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, tzinfo
from typing import Protocol

import numpy as np
from pydicom.dataset import Dataset

from dipro.vocab import REGIONS
from dipro_fhir.core.errors import ResourceNotFound
from dipro_fhir.core.limits import DEFAULT_LIMITS, InputLimits
from dipro_fhir.core.timeline import FloatArray, ImageEvent, MappingIssue, ResourceRef
from dipro_fhir.imaging.boxes import RegionBoxes
from dipro_fhir.imaging.crops import crop_regions
from dipro_fhir.imaging.decode import (
    DECODER_VERSION,
    CorruptImage,
    ImageTooLarge,
    check_image_size,
    decode_radiograph,
)
from dipro_fhir.imaging.frontal import ImageCandidate, acquisition_time, select_frontal
from dipro_fhir.imaging.qc import THORAX_CONFIDENCE, THORAX_METHOD, apply_qc, check_placement
from dipro_fhir.imaging.regions import GeometricRegionLocator, RegionLocator
from dipro_fhir.imaging.sources import CHEST_MODALITIES, ImageSource
from dipro_fhir.imaging.thorax import fallback_placement

log = logging.getLogger(__name__)

#: Version of the region QC verdict (which codes an image raises); part of the cache key.
QC_VERSION = "qc/7"
#: DICOM frame numbers start at 1; a radiograph is one frame.
FRAME = 1
#: Codes of the QC verdict, replayed from the cache when the image is not read again.
QC_CODES = frozenset(
    {
        "regions-not-found",
        "regions-partial",
        "regions-approximate",
        "regions-qc-failed",
        "regions-opacified-base",
        "regions-from-thorax",
    }
)


def preprocessing_version(locator: RegionLocator | None, crop_size: int) -> str:
    """Decoder, locator (class, parameters, version) and QC versions and the crop size.

    A locator's ``repr`` names its parameters (a frozen dataclass), so tuning one changes the
    version; a plug-in locator may add a ``version`` attribute for changes to its code.
    """
    loc = locator or GeometricRegionLocator()
    name = f"{loc!r}@{getattr(loc, 'version', '1')}"
    return f"{DECODER_VERSION};locator={name};{QC_VERSION};crop={crop_size}"


class FeatureLookup(Protocol):
    """The feature cache as extraction sees it (:mod:`dipro_fhir.scoring.features`)."""

    def cached_event(
        self,
        candidate: ImageCandidate,
        preprocessing: str,
        window_start: datetime,
        imaging_study_ref: ResourceRef | None,
    ) -> tuple[ImageEvent | None, list[MappingIssue]]:
        """The event rebuilt from a cached entry (or ``None``) and the issues met."""
        ...


def boxes_array(boxes: RegionBoxes) -> FloatArray:
    """float32 ``[R, 4]`` of ``boxes``, NaN rows where a region is missing."""
    rows = [b if b is not None else (np.nan,) * 4 for b in boxes.boxes]
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), 4)


def image_event_from_dataset(
    ds: Dataset,
    *,
    window_start: datetime,
    crop_size: int = 224,
    locator: RegionLocator | None = None,
    imaging_study_ref: ResourceRef | None = None,
    site_tz: tzinfo = UTC,
    limits: InputLimits = DEFAULT_LIMITS,
) -> tuple[ImageEvent | None, list[MappingIssue]]:
    """Map one frontal radiograph to an event.

    Args:
        ds: The whole instance (pixels included).
        window_start: Start of the observation window (aware).
        crop_size: Side of each region crop.
        locator: Region locator (the run passes the configured one); ``None``: the geometric one.
        imaging_study_ref: The FHIR ImagingStudy that named this study, for provenance.
        site_tz: Time zone of header times that carry no offset.
        limits: The largest image decoded.

    Returns:
        The event (``None`` when the image is unusable) and the issues met.
    """
    resource = f"instance/{ds.get('SOPInstanceUID', '')}"
    try:
        image = decode_radiograph(ds, limits)
    except ImageTooLarge as exc:
        return None, [MappingIssue("image-too-large", resource, str(exc))]
    except CorruptImage as exc:
        return None, [MappingIssue("corrupt-dicom", resource, str(exc))]
    acquired = acquisition_time(ds, site_tz)
    if acquired is None:
        return None, [MappingIssue("missing-acquisition-time", resource, "no usable date")]
    boxes = (locator or GeometricRegionLocator()).locate(image)
    issues: list[MappingIssue] = []
    placed = boxes.mask
    if not placed.any():
        return None, [MappingIssue("regions-not-found", resource, "thorax not found")]
    qc = check_placement(image, boxes)
    refused = qc.film_reason
    fallback = fallback_placement(image, boxes, qc)
    if fallback is not None:
        boxes, qc = fallback
    if not qc.film_ok:
        # The placement as a whole is not plausible: the film is not used (issue 11).
        return None, [MappingIssue("regions-qc-film", resource, qc.film_reason)]
    for side in qc.base_from_other_side:
        issues.append(
            MappingIssue(
                "regions-opacified-base",
                resource,
                f"{side} lung base measured high (an opacity?): checked against the other base",
            )
        )
    if boxes.method == THORAX_METHOD:
        issues.append(
            MappingIssue(
                "regions-from-thorax",
                resource,
                f"lung fields refused ({refused}): regions placed from the thorax outline, "
                f"confidence at most {THORAX_CONFIDENCE}",
            )
        )
    if boxes.approximate:
        # Placed by mirroring one lung, not from both lung fields.
        issues.append(MappingIssue("regions-approximate", resource, f"method {boxes.method}"))
    failed = [r for r in qc.regions if not r.ok and "not-placed" not in r.reasons]
    if failed:
        detail = "; ".join(f"{r.region}: {','.join(r.reasons)}" for r in failed)
        issues.append(MappingIssue("regions-qc-failed", resource, detail))
    crops, mask = crop_regions(image, apply_qc(boxes, qc), crop_size)
    if not mask.all():
        missing = ",".join(REGIONS[i] for i in np.flatnonzero(~mask))
        issues.append(MappingIssue("regions-partial", resource, f"missing: {missing}"))
    verdict = tuple((i.code, i.detail) for i in issues if i.code in QC_CODES)
    event = ImageEvent(
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        instance_uid=str(ds.get("SOPInstanceUID", "")),
        acquired=acquired,
        hours_since_window_start=(acquired - window_start).total_seconds() / 3600.0,
        crops=crops,
        region_mask=mask,
        view_position=str(ds.get("ViewPosition", "") or ""),
        imaging_study=imaging_study_ref,
        boxes=boxes_array(boxes),
        qc=verdict,
        preprocessing=preprocessing_version(locator, crop_size),
    )
    return event, issues


def frontal_candidates(
    source: ImageSource, study_uid: str, site_tz: tzinfo = UTC
) -> list[ImageCandidate]:
    """Header facts of every CR/DX chest instance of a study (client-side filtering)."""
    out: list[ImageCandidate] = []
    for series in source.series_for_study(study_uid):
        if series.modality and series.modality not in CHEST_MODALITIES:
            continue
        for c in source.instances_for_series(study_uid, series.series_uid, site_tz):
            if c.modality in CHEST_MODALITIES and c.body_part in ("", "CHEST", "THORAX"):
                out.append(c)
    return out


def fetch_image_events(
    source: ImageSource,
    study_uid: str,
    *,
    window_start: datetime,
    crop_size: int = 224,
    locator: RegionLocator | None = None,
    imaging_study_ref: ResourceRef | None = None,
    site_tz: tzinfo = UTC,
    limits: InputLimits = DEFAULT_LIMITS,
    cache: FeatureLookup | None = None,
    patient_identity: frozenset[str] | None = None,
) -> tuple[list[ImageEvent], list[MappingIssue]]:
    """Select, retrieve and map the frontal radiograph of one study.

    With ``cache``, a cached instance is neither retrieved nor decoded (module docstring).
    With ``patient_identity`` (the scored Patient's id and identifier values), a film whose
    header names patient ids of which none is the scored patient's is not used
    (``patient-mismatch``): it may belong to another patient.

    Returns:
        At most one event (the study's frontal film) and the issues met; a study that is
        missing on the source gives ``image-missing``, one without a frontal film
        ``no-frontal-image``.

    Raises:
        SourceUnavailable: The source failed after its retries.
        AuthError: Credentials were refused.
    """
    started = time.monotonic()
    study_ref = f"study/{study_uid}"
    found = source.study_problems(study_uid)
    try:
        choice = select_frontal(frontal_candidates(source, study_uid, site_tz))
        if choice.candidate is None:
            return [], [*found, MappingIssue("no-frontal-image", study_ref, choice.reason)]
        c = choice.candidate
        named = c.patient_ids
        if patient_identity is not None and named and not patient_identity.intersection(named):
            detail = "the header's patient ids name none of the scored patient's identifiers"
            issue = MappingIssue("patient-mismatch", f"instance/{c.instance_uid}", detail)
            return [], [*found, issue]
        check_image_size(c.rows, c.columns, 0, limits, c.frames)
        if cache is not None:
            version = preprocessing_version(locator, crop_size)
            hit, cache_issues = cache.cached_event(c, version, window_start, imaging_study_ref)
            found = [*found, *cache_issues]
            if hit is not None:
                return [hit], found
        ds = source.retrieve(c.study_uid, c.series_uid, c.instance_uid)
    except ResourceNotFound as exc:
        return [], [*found, MappingIssue("image-missing", study_ref, str(exc))]
    except ImageTooLarge as exc:
        issue = MappingIssue("image-too-large", f"instance/{c.instance_uid}", str(exc))
        return [], [*found, issue]
    except CorruptImage as exc:
        issue = MappingIssue("corrupt-dicom", f"instance/{c.instance_uid}", str(exc))
        return [], [*found, issue]
    event, issues = image_event_from_dataset(
        ds,
        window_start=window_start,
        crop_size=crop_size,
        locator=locator,
        imaging_study_ref=imaging_study_ref,
        site_tz=site_tz,
        limits=limits,
    )
    log.debug(
        "study mapped in %.0f ms (%d issues)", 1e3 * (time.monotonic() - started), len(issues)
    )
    return ([event] if event is not None else []), [*found, *issues]
