"""The synthetic world's types: one patient, what the FHIR server will hold, and the truth.

A :class:`SyntheticPatient` is everything the generator decided about one ICU stay, in our own
frozen types. The FHIR resources (``synth.fhir``) and DICOM files (``synth.images``) are pure
functions of it, and :class:`GroundTruth` records what a correct extraction + mapping must find
(canonical values, CXR acquisition times, labels), so tests compare a mapped
``PatientTimeline`` with it instead of with hand-written numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from dipro.vocab import FINDINGS, LOS_BINS, REGIONS, VARIABLES
from dipro_fhir.core.timeline import BoolArray, FloatArray

_VARIABLE_INDEX = {name: i for i, name in enumerate(VARIABLES)}
#: Variables whose hourly value is the sum of the hour's records (one per observation).
_VOLUMES_PER_HOUR = frozenset({"urine_output"})


@dataclass(frozen=True, slots=True)
class Demographics:
    """Patient demographics (FHIR ``Patient`` + US Core race/ethnicity extensions).

    Attributes:
        birth_date: ``Patient.birthDate``.
        gender: ``Patient.gender`` (``female`` / ``male``).
        race_code: OMB race category (urn:oid:2.16.840.1.113883.6.238), e.g. ``2106-3``.
        race_display: Its display text.
        ethnicity_code: OMB ethnicity category (``2135-2`` Hispanic or ``2186-5`` not).
        language: BCP-47 code of ``Patient.communication.language`` or ``None`` if unrecorded.
        marital_status: v3-MaritalStatus code (``M``, ``S``, ``D``, ``W``) or ``None``.
    """

    birth_date: date
    gender: str
    race_code: str
    race_display: str
    ethnicity_code: str
    language: str | None
    marital_status: str | None


@dataclass(frozen=True, slots=True)
class Stay:
    """The ICU encounter (FHIR ``Encounter``, class IMP, type ICU).

    Attributes:
        encounter_id: The Encounter's client-assigned id.
        admitted: ``Encounter.period.start`` (UTC).
        discharged: When the stay ends (death or discharge); ``Encounter.period.end`` only
            when ``finished``.
        died: In-hospital death (``Patient.deceasedDateTime`` = ``discharged``).
        discharge_disposition: ``Encounter.hospitalization.dischargeDisposition`` code
            (http://terminology.hl7.org/CodeSystem/discharge-disposition); ``exp`` when died.
        finished: ``discharged`` is at or before the cohort's reference time; otherwise the
            encounter is ``in-progress`` and nothing after the reference time exists in FHIR.
    """

    encounter_id: str
    admitted: datetime
    discharged: datetime
    died: bool
    discharge_disposition: str
    finished: bool

    @property
    def los_days(self) -> float:
        """Length of stay in days (``Encounter.period``)."""
        return (self.discharged - self.admitted) / timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One value inside an Observation (top level or a panel component).

    Attributes:
        variable: DiPro variable name.
        loinc: The LOINC code written (``Observation.code`` or ``component.code``).
        value: The value as written, in ``unit``; ``None`` with a ``dataAbsentReason``.
        unit: UCUM code written in ``valueQuantity.code``.
        canonical_value: ``value`` converted to the variable's canonical unit with the map's
            conversion, or ``None`` when absent (or sent under a code no map knows).
        system: The code system of ``loinc`` (a drifting world sends local codes,
            :mod:`dipro_fhir.synth.drift`).
    """

    variable: str
    loinc: str
    value: float | None
    unit: str
    canonical_value: float | None
    system: str = "http://loinc.org"


@dataclass(frozen=True, slots=True)
class SynthObservation:
    """One FHIR ``Observation`` (a single value or the BP panel 85354-9 with components).

    Attributes:
        id: Client-assigned id.
        category: ``vital-signs`` or ``laboratory``.
        effective: ``effectiveDateTime``.
        issued: ``issued`` (5-60 min after ``effective``); ``meta.lastUpdated`` follows it.
        status: ``final``, ``amended``, ``cancelled`` or ``entered-in-error``.
        measurements: One entry, or the panel's components (systolic, diastolic).
        panel_loinc: The panel code when ``measurements`` are components, else ``None``.
        absent_reason: data-absent-reason code (``not-performed`` ...) or ``None``.
    """

    id: str
    category: str
    effective: datetime
    issued: datetime
    status: str
    measurements: tuple[Measurement, ...]
    panel_loinc: str | None = None
    absent_reason: str | None = None

    @property
    def usable(self) -> bool:
        """Whether a correct mapper turns this Observation into values."""
        return self.status in ("final", "amended") and self.absent_reason is None


@dataclass(frozen=True, slots=True)
class SynthImage:
    """One DICOM instance of a chest X-ray study.

    Attributes:
        series_uid: Series Instance UID (one series per image).
        instance_uid: SOP Instance UID.
        view_position: DICOM ViewPosition (0018,5101): ``PA``, ``AP`` or ``LL``.
        bits_stored: 12 or 16.
        photometric: ``MONOCHROME1`` or ``MONOCHROME2``.
        compress_j2k: Written with JPEG 2000 lossless transfer syntax.
        render_seed: Seed for the renderer (noise, positioning).
        faulty: Made by a failing detector: the film shows no chest (a drifting world's
            scanner fault, :mod:`dipro_fhir.synth.drift`), so quality control refuses it.
    """

    series_uid: str
    instance_uid: str
    view_position: str
    bits_stored: int
    photometric: str
    compress_j2k: bool
    render_seed: int
    faulty: bool = False

    @property
    def frontal(self) -> bool:
        """PA or AP: the views DiPro reads (reference §1.3)."""
        return self.view_position in ("PA", "AP")


@dataclass(frozen=True, slots=True)
class SynthStudy:
    """One chest X-ray study (FHIR ``ImagingStudy`` + radiology ``DiagnosticReport``).

    Attributes:
        study_uid: Study Instance UID.
        imaging_study_id: The ImagingStudy's client-assigned id.
        report_id: The DiagnosticReport's client-assigned id.
        started: Acquisition time (``ImagingStudy.started``, DICOM AcquisitionDateTime).
        report_issued: When the report became available.
        modality: ``CR`` or ``DX``.
        images: The frontal image first, then a lateral in about 20% of studies.
        severity: float ``[F][R]`` in 0..1, ``dipro.vocab.FINDINGS`` x ``REGIONS`` order.
    """

    study_uid: str
    imaging_study_id: str
    report_id: str
    started: datetime
    report_issued: datetime
    modality: str
    images: tuple[SynthImage, ...]
    severity: tuple[tuple[float, ...], ...]

    @property
    def frontal(self) -> SynthImage:
        """The study's frontal image."""
        return next(i for i in self.images if i.frontal)

    def severity_map(self) -> dict[str, dict[str, float]]:
        """Severity as the renderer takes it: finding -> region -> 0..1."""
        return {
            f: {r: self.severity[i][j] for j, r in enumerate(REGIONS)}
            for i, f in enumerate(FINDINGS)
        }


@dataclass(frozen=True, slots=True)
class TruthValue:
    """One value a correct mapper must produce, in the variable's canonical unit.

    ``available`` is ``issued``: with an as-of time before it the value must not be used.
    """

    variable: str
    effective: datetime
    value: float
    available: datetime
    observation_id: str


@dataclass(frozen=True, slots=True)
class TruthImage:
    """One frontal CXR a correct extraction must find."""

    study_uid: str
    series_uid: str
    instance_uid: str
    acquired: datetime
    view_position: str


@dataclass(frozen=True, slots=True)
class PairLabel:
    """Progression ground truth of one consecutive frontal CXR pair (reference §3.1).

    Attributes:
        earlier_study_uid: cxr1.
        later_study_uid: cxr2 (its DiagnosticReport carries the coded comparison).
        labels: ``[F]`` per finding: index into ``dipro.vocab.PROGRESSION_CLASSES`` or
            ``PROGRESSION_IGNORE`` (3) when the finding is in neither image.
        region_labels: ``[R][F]`` the same per region (the PAE auxiliary labels).
    """

    earlier_study_uid: str
    later_study_uid: str
    labels: tuple[int, ...]
    region_labels: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What a correct pipeline must find for one patient.

    Attributes:
        patient_id: ``Patient.id``.
        encounter_id: ``Encounter.id``.
        admitted: ICU admission time.
        discharged: End of stay (death or discharge), also when not yet finished.
        outcome_known: The stay ended by the cohort's reference time.
        mortality: 1 if the patient died in hospital.
        los_days: Length of stay in days.
        los_bin: Index into ``dipro.vocab.LOS_BINS``.
        values: Every usable measurement, sorted by (effective, variable).
        images: Frontal CXRs, oldest first.
        pairs: One label record per consecutive frontal pair.
    """

    patient_id: str
    encounter_id: str
    admitted: datetime
    discharged: datetime
    outcome_known: bool
    mortality: int
    los_days: float
    los_bin: int
    values: tuple[TruthValue, ...]
    images: tuple[TruthImage, ...]
    pairs: tuple[PairLabel, ...]

    def values_of(self, variable: str) -> tuple[TruthValue, ...]:
        """All values of one variable, oldest first."""
        return tuple(v for v in self.values if v.variable == variable)

    def images_before(self, as_of: datetime) -> tuple[TruthImage, ...]:
        """Frontal CXRs acquired before ``as_of``, oldest first."""
        return tuple(i for i in self.images if i.acquired < as_of)

    def ehr_grid(self, as_of: datetime, window_hours: int = 48) -> tuple[FloatArray, BoolArray]:
        """The hourly grid a correct mapper builds (``PatientTimeline.ehr_values``/``ehr_mask``).

        Bin ``h`` is ``[as_of - window_hours + h, ... + 1)``; the last value by effective
        time wins, except for urine output, a volume per hour, which is the hour's sum;
        values not yet available at ``as_of`` are left out (DESIGN.md).

        Returns:
            float32 ``[window_hours, 38]`` (NaN where unobserved) and its bool mask.
        """
        start = as_of - timedelta(hours=window_hours)
        values = np.full((window_hours, len(VARIABLES)), np.nan, dtype=np.float32)
        mask = np.zeros((window_hours, len(VARIABLES)), dtype=np.bool_)
        for v in self.values:  # sorted by effective: later values overwrite earlier ones
            if not (start <= v.effective < as_of) or v.available > as_of:
                continue
            h, column = (
                math.floor((v.effective - start) / timedelta(hours=1)),
                _VARIABLE_INDEX[v.variable],
            )
            summed = v.variable in _VOLUMES_PER_HOUR and mask[h, column]
            values[h, column] = values[h, column] + v.value if summed else v.value
            mask[h, column] = True
        return values, mask


def los_bin_of(los_days: float) -> int:
    """The LOS class of reference §3.3: [2,3), [3,4), [4,6), >= 6 days."""
    bounds = (3.0, 4.0, 6.0)
    index = sum(los_days >= b for b in bounds)
    assert index < len(LOS_BINS)
    return index
