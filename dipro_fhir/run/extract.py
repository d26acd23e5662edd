"""Extraction: one patient's FHIR resources and chest radiographs become a timeline.

This is the only place where the data plane's parts meet: a :class:`FhirSource` for
``Patient``, ``Encounter``, ``Observation`` and ``ImagingStudy``, an :class:`ImageSource` for
the pixels, the imaging chain (frontal view, regions, crops) and the pure mapper.

No look-ahead (DESIGN.md): Observations are searched in ``[window_start, as_of)`` and the
mapper drops any that became available after ``as_of``; an ImagingStudy that started at or
after ``as_of``, or became known after it (``meta.lastUpdated``; ``started`` under the
``issued`` availability rule), is never opened, and a radiograph acquired at or after
``as_of`` is dropped. Only the resources that are mapped are validated with
``fhir.resources`` (full validation costs far more than parsing); invalid ones are recorded.

Failures are sorted by what the run does next: a server that stays unavailable after retries
or a missing Patient fails *this patient* (:class:`PatientFailure`); refused credentials and
model-contract problems stop the run (they would fail every patient). Anything else raised
while one patient is extracted (a defect, a breached input limit deep in a library) is
caught at the patient boundary too: the patient fails with reason ``internal-error`` (or
``input-limit``) and only the exception's type is kept, never its message (it may quote
data).

Codes are read through the run's code maps (ConceptMaps: :mod:`dipro_fhir.mapping.code_maps`).
What the window held that could not be used is added to a :class:`QualityCounter` (the
chunk's data-quality summary: unmapped codes, variable coverage, unusable images), and the
source's problems are attributed: the patient's own (:meth:`FhirSource.patient_issues`) go
on its timeline; problems of no patient stay with the source for the caller to collect.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from dipro_fhir.core.errors import (
    AuthError,
    InvalidResource,
    ModelContractError,
    ResourceNotFound,
    ServerProtocolError,
    SourceUnavailable,
)
from dipro_fhir.core.limits import DEFAULT_LIMITS, InputLimitExceeded, InputLimits, is_fhir_id
from dipro_fhir.core.log import patient_tag
from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.threads import use_torch_threads
from dipro_fhir.core.timeline import (
    EncounterId,
    ImageEvent,
    MappingIssue,
    PatientId,
    PatientTimeline,
)
from dipro_fhir.fhir.cohort import DEFAULT_RULE, CohortRule, choose_encounter
from dipro_fhir.fhir.matching import is_under_way
from dipro_fhir.fhir.resources import validate_many, validate_resource
from dipro_fhir.fhir.source import FhirSource
from dipro_fhir.imaging.events import FeatureLookup, fetch_image_events
from dipro_fhir.imaging.locators import load_locator
from dipro_fhir.imaging.regions import RegionLocator
from dipro_fhir.imaging.sources import ImageSource
from dipro_fhir.mapping.code_maps import CodeMaps, default_code_maps
from dipro_fhir.mapping.imaging_study import StudyRef, read_imaging_study
from dipro_fhir.mapping.labels import admission_chain, stay_period
from dipro_fhir.mapping.observations import available_at, dipro_variables_of
from dipro_fhir.mapping.quality import DataQuality, timeline_quality, unmapped_quality
from dipro_fhir.mapping.timeline import build_timeline, window_start_for

logger = logging.getLogger(__name__)


class StageTimer:
    """Adds up wall time per extraction stage (``fhir``, ``validate``, ``images``, ``map``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started


class QualityCounter:
    """Adds up a chunk's data-quality summary patient by patient (like :class:`StageTimer`)."""

    def __init__(self) -> None:
        self.summary = DataQuality()

    def add(self, part: DataQuality) -> None:
        """Add one patient's (or the source's) counts."""
        self.summary = self.summary.merged(part)


@dataclass(frozen=True, slots=True)
class ExtractOptions:
    """How a patient is extracted: window, image geometry and site conventions."""

    window_hours: int
    crop_size: int
    max_cxrs: int
    locator: RegionLocator
    site_tz: tzinfo
    availability: str = "strict"
    log_salt: str | None = None
    code_maps: CodeMaps = field(default_factory=default_code_maps)
    cohort: CohortRule = DEFAULT_RULE
    limits: InputLimits = DEFAULT_LIMITS
    features: FeatureLookup | None = None


def extract_options(
    settings: Settings,
    *,
    crop_size: int,
    max_cxrs: int,
    features: FeatureLookup | None = None,
) -> ExtractOptions:
    """The run settings' extraction options, for a model with this crop size and sequence.

    ``features``: the shared feature cache; cached instances are then not retrieved.

    Raises:
        ConfigError: A configured ConceptMap or the configured region locator cannot be read.
    """
    from dipro_fhir.run import connections

    maps = connections.code_maps(settings)
    salt = settings.run.log_salt
    use_torch_threads(settings.model.torch_threads)  # the locator runs torch
    return ExtractOptions(
        window_hours=settings.run.window_hours,
        crop_size=crop_size,
        max_cxrs=max_cxrs,
        locator=load_locator(settings.imaging.locator),
        site_tz=ZoneInfo(settings.run.site_timezone),
        availability=settings.run.availability,
        log_salt=None if salt is None else salt.get_secret_value(),
        code_maps=maps,
        cohort=connections.cohort_rule(settings, maps),
        limits=connections.input_limits(settings),
        features=features,
    )


def extract_patient(
    fhir: FhirSource,
    images: ImageSource,
    patient_id: PatientId,
    encounter_id: EncounterId | None,
    as_of: datetime,
    options: ExtractOptions,
    timer: StageTimer | None = None,
    quality: QualityCounter | None = None,
) -> PatientTimeline | PatientFailure:
    """Extract and map one patient as of ``as_of``; a per-patient failure is returned.

    Args:
        fhir: Where FHIR resources come from.
        images: Where the radiographs come from.
        patient_id: The patient.
        encounter_id: The stay, when the cohort plan knows it (else the one active at as_of).
        as_of: The scoring time; nothing dated or known later is used.
        options: Window, crop size, locator, site timezone, availability rule.
        timer: Adds up time per stage, when given.
        quality: Adds up the data-quality summary, when given (only for mapped patients).

    Raises:
        AuthError: Credentials were refused (stop the run).
        ModelContractError: The mapped data cannot fit the model (stop the run).
    """
    try:
        if not is_fhir_id(patient_id) or not (encounter_id is None or is_fhir_id(encounter_id)):
            raise InputLimitExceeded(f"not a FHIR id ({len(patient_id)} characters)")
        timeline, unmapped = _extract(
            fhir, images, patient_id, encounter_id, as_of, options, timer or StageTimer()
        )
        if quality is not None:
            quality.add(unmapped.merged(timeline_quality(timeline)))
        return timeline
    except (AuthError, ModelContractError):
        raise
    except SourceUnavailable as exc:
        reason, retriable, detail = "source-unavailable", True, f"status {exc.status}"
    except ServerProtocolError as exc:  # the same answer every night: the server's data problem
        reason, retriable, detail = "server-protocol", False, str(exc)
    except ResourceNotFound as exc:
        reason, retriable, detail = "not-found", False, f"status {exc.status}"
    except InputLimitExceeded as exc:
        reason, retriable, detail = "input-limit", False, _limit_detail(exc)
    except InvalidResource as exc:
        reason, retriable, detail = "invalid-resource", False, type(exc).__name__
    except RecursionError:
        reason, retriable, detail = "input-limit", False, "nested too deep (RecursionError)"
    except MemoryError:
        reason, retriable, detail = "input-limit", False, "out of memory (MemoryError)"
    except Exception as exc:  # the patient boundary: one patient fails
        reason, retriable, detail = "internal-error", False, type(exc).__name__
    tag = patient_tag(patient_id, options.log_salt)
    logger.warning("patient %s failed in extract: %s (%s)", tag, reason, detail)
    return PatientFailure(patient_id, "extract", reason, detail, retriable)


def _limit_detail(exc: InputLimitExceeded) -> str:
    """The limit's message: sizes and counts only (module :mod:`dipro_fhir.core.limits`)."""
    return str(exc)


def _extract(
    fhir: FhirSource,
    images: ImageSource,
    patient_id: PatientId,
    encounter_id: EncounterId | None,
    as_of: datetime,
    options: ExtractOptions,
    timer: StageTimer,
) -> tuple[PatientTimeline, DataQuality]:
    window_start = window_start_for(as_of, options.window_hours)
    with timer.stage("fhir"):
        patient = fhir.patient(patient_id)
        encounters = list(fhir.encounters(patient_id))
        encounter = _scored_encounter(encounters, encounter_id, as_of, options.cohort)
        encounter_id = None if encounter is None else EncounterId(str(encounter["id"]))
        stay_start = None if encounter is None else stay_period(encounter)[0]
        observations: list[dict[str, Any]] = []
        unmapped: list[dict[str, Any]] = []
        for o in fhir.observations(patient_id, since=window_start, until=as_of):
            (observations if dipro_variables_of(o, options.code_maps) else unmapped).append(o)
        raw_studies = list(fhir.imaging_studies(patient_id))
    with timer.stage("validate"):
        # Full R4 validation costs ~1000x a JSON parse: only what is mapped is validated.
        validate_resource(patient)
        observations, invalid = validate_many(observations)
        raw_studies, invalid_studies = validate_many(raw_studies)
        stays = _related_stays(encounter, encounters)
        studies = _known_studies(iter(raw_studies), stays, as_of, options.availability)
    with timer.stage("images"):
        identity = patient_identity(patient)
        cxrs, image_issues = _recent_cxrs(images, studies, window_start, as_of, options, identity)
    with timer.stage("map"):
        timeline = build_timeline(
            patient_id,
            encounter_id,
            as_of,
            patient,
            observations,
            cxrs,
            window_hours=options.window_hours,
            extra_issues=[
                *fhir.patient_issues(patient_id),
                *invalid,
                *invalid_studies,
                *image_issues,
            ],
            availability=options.availability,
            stay_start=stay_start,
            maps=options.code_maps,
        )
    return timeline, unmapped_quality(unmapped)


def patient_identity(patient: Mapping[str, Any]) -> frozenset[str]:
    """The ids that name this patient: ``Patient.id`` and every ``identifier.value`` (a DICOM
    PatientID is usually the MRN, one of the identifiers)."""
    ids = {str(patient.get("id", ""))}
    for identifier in patient.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("value"):
            ids.add(str(identifier["value"]).strip())
    return frozenset(i for i in ids if i)


def _scored_encounter(
    encounters: list[dict[str, Any]],
    encounter_id: EncounterId | None,
    as_of: datetime,
    rule: CohortRule,
) -> Mapping[str, Any] | None:
    """The encounter to score: the one the plan named, else the one the cohort rule admits
    at ``as_of`` (any encounter under way for the location rule), innermost first
    (:func:`~dipro_fhir.fhir.cohort.choose_encounter`), else none."""
    if encounter_id is not None:
        return next((e for e in encounters if e.get("id") == encounter_id), None)
    admitted = [
        e
        for e in encounters
        if e.get("id")
        and (rule.admits(e, as_of) if rule.kind == "class" else is_under_way(e, as_of))
    ]
    return choose_encounter(admitted)


def _related_stays(
    encounter: Mapping[str, Any] | None, encounters: Sequence[Mapping[str, Any]]
) -> frozenset[str] | None:
    """Ids of the scored stay, the encounters it is part of and those part of it
    (``Encounter.partOf``): a film filed under the hospital admission belongs to its ICU
    stay's history too. ``None`` when no stay is known (every study counts)."""
    if encounter is None:
        return None
    own = str(encounter.get("id"))
    related = {str(e.get("id")) for e in admission_chain(encounter, encounters)}
    for other in encounters:
        if own in {str(e.get("id")) for e in admission_chain(other, encounters)}:
            related.add(str(other.get("id")))
    return frozenset(related)


def _known_studies(
    studies: Iterator[dict[str, Any]],
    stays: frozenset[str] | None,
    as_of: datetime,
    availability: str,
) -> list[StudyRef]:
    """ImagingStudies known at ``as_of`` (started and recorded before it), newest first.

    When the stay is known, only the studies of it and its related encounters (or of no
    encounter) count (longitudinal context within the stay, DESIGN.md "Observation window").
    """
    kept = []
    for study in studies:
        ref = read_imaging_study(study)
        # ImagingStudy has no `issued`: under the `issued` rule (data loaded after the fact)
        # it counts as known from `started`; under `strict`, from `meta.lastUpdated` too.
        known = ref.started if availability == "issued" else available_at(study, "strict")
        if ref.started is None or ref.started >= as_of or (known is not None and known > as_of):
            continue
        if stays is not None and ref.encounter_id is not None and ref.encounter_id not in stays:
            continue
        kept.append(ref)
    return sorted(kept, key=lambda r: (r.started, r.resource.id), reverse=True)


def _recent_cxrs(
    images: ImageSource,
    studies: Sequence[StudyRef],
    window_start: datetime,
    as_of: datetime,
    options: ExtractOptions,
    identity: frozenset[str],
) -> tuple[list[ImageEvent], list[MappingIssue]]:
    """Up to ``max_cxrs`` frontal radiographs, newest fetched first, returned oldest first;
    a film whose header names another patient is not used (``patient-mismatch``)."""
    events: list[ImageEvent] = []
    issues: list[MappingIssue] = []
    for study in studies:
        if len(events) >= options.max_cxrs:
            break
        if study.declared_not_chest_radiograph():  # an arm or ankle film: not requested
            detail = "its series name another body site or modality"
            issues.append(MappingIssue("not-chest-radiograph", study.resource.reference, detail))
            continue
        if study.study_uid is None:
            detail = "no urn:dicom:uid or urn:oid identifier"
            issues.append(MappingIssue("no-study-uid", study.resource.reference, detail))
            continue
        found, problems = fetch_image_events(
            images,
            study.study_uid,
            window_start=window_start,
            crop_size=options.crop_size,
            locator=options.locator,
            imaging_study_ref=study.resource,
            site_tz=options.site_tz,
            limits=options.limits,
            cache=options.features,
            patient_identity=identity,
        )
        issues.extend(problems)
        for event in found:
            if event.acquired < as_of:
                events.append(event)
            else:
                issues.append(
                    MappingIssue("after-as-of", study.resource.reference, "acquired after as-of")
                )
    events.sort(key=lambda e: (e.acquired, e.instance_uid))
    return events[-options.max_cxrs :], issues
