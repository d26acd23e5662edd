"""The seeded synthetic ICU cohort: one :class:`SyntheticPatient` at a time.

Every patient is drawn from its own random stream ``default_rng([seed, index])``, so patient
17 is the same whatever ``n_patients`` is, the cohort streams in constant memory, and two
runs with the same seed give identical resources. The latent severity course
(``synth.physiology``) drives vitals, labs, CXR findings and the outcome together:

* mortality: logistic in the severity at 48 h, its trend and age (about 15% die);
* length of stay: 2-10 days, longer for sicker and worsening patients (reference §3.3 bins);
* progression: the change of each finding between consecutive CXRs (``synth.cxr``).

So the labels are learnable from the first 48 h of EHR and the CXR changes, as in the paper.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from dipro_fhir.synth import cxr, physiology
from dipro_fhir.synth.radiograph import Anatomy, random_anatomy
from dipro_fhir.synth.records import (
    Demographics,
    GroundTruth,
    Stay,
    SynthImage,
    SynthObservation,
    SynthStudy,
    TruthImage,
    TruthValue,
    los_bin_of,
)

_RACES = (
    ("2106-3", "White", 0.6),
    ("2054-5", "Black or African American", 0.15),
    ("2028-9", "Asian", 0.08),
    ("2131-1", "Other Race", 0.07),
    ("1002-5", "American Indian or Alaska Native", 0.02),
    ("2076-8", "Native Hawaiian or Other Pacific Islander", 0.02),
    ("UNK", "Unknown", 0.06),
)
_LANGUAGES = (("en", 0.82), ("es", 0.1), ("zh", 0.03), ("vi", 0.02), (None, 0.03))
_MARITAL = (("M", 0.45), ("S", 0.3), ("W", 0.12), ("D", 0.1), (None, 0.03))
_DISPOSITIONS = (("home", 0.55), ("snf", 0.2), ("rehab", 0.12), ("other-hcf", 0.08), ("hosp", 0.05))


@dataclass(frozen=True, slots=True)
class SyntheticPatient:
    """One synthetic ICU stay: what FHIR and DICOM will hold, and the ground truth.

    Attributes:
        patient_id: ``Patient.id`` (``<prefix>-000017``).
        index: Position in the cohort.
        demographics: Patient demographics.
        stay: The ICU encounter.
        anatomy: Static anatomy of this patient's radiographs.
        observations: Every Observation (usable or not), sorted by effective time.
        studies: CXR studies, oldest first (only those acquired by the reference time).
        truth: What a correct pipeline must find.
    """

    patient_id: str
    index: int
    demographics: Demographics
    stay: Stay
    anatomy: Anatomy
    observations: tuple[SynthObservation, ...]
    studies: tuple[SynthStudy, ...]
    truth: GroundTruth


def generate_cohort(
    n_patients: int,
    *,
    seed: int,
    start: datetime,
    admission_span_days: float = 14.0,
    reference_time: datetime | None = None,
    id_prefix: str = "synth",
    outcome_inverted: Callable[[Demographics, datetime], bool] | None = None,
) -> Iterator[SyntheticPatient]:
    """Yield ``n_patients`` synthetic ICU stays, lazily, one at a time.

    Args:
        n_patients: How many patients.
        seed: Seed of the whole cohort; patient ``i`` uses ``default_rng([seed, i])``.
        start: Earliest admission (timezone-aware); admissions spread over
            ``admission_span_days``.
        admission_span_days: Width of the admission window.
        reference_time: "Now" of the cohort: stays not ended by then are ``in-progress`` and
            nothing dated (or issued) later exists. ``None``: every stay has ended.
        id_prefix: Prefix of every id (alphanumeric); distinct prefixes let several cohorts
            share one server.
        outcome_inverted: Called with a patient's demographics and admission time; where it
            says so, death follows the *mirrored* severity course (the sickest-looking
            survive, the healthiest-looking die, about as many as otherwise): a subgroup
            whose outcomes a model trained on this world gets wrong
            (:mod:`dipro_fhir.synth.drift`). Everything else about the patient stays the same.

    Raises:
        ValueError: A naive ``start`` or ``reference_time``, or a bad prefix.
    """
    if start.tzinfo is None or (reference_time is not None and reference_time.tzinfo is None):
        raise ValueError("start and reference_time must be timezone-aware")
    if not id_prefix.isalnum():
        raise ValueError("id_prefix must be alphanumeric")
    for index in range(n_patients):
        rng = np.random.default_rng([seed, index])
        yield _generate_patient(
            rng, index, seed, start.astimezone(UTC), admission_span_days, reference_time, id_prefix,
            outcome_inverted,
        )  # fmt: skip


def _generate_patient(
    rng: np.random.Generator,
    index: int,
    seed: int,
    start: datetime,
    span_days: float,
    reference_time: datetime | None,
    prefix: str,
    outcome_inverted: Callable[[Demographics, datetime], bool] | None = None,
) -> SyntheticPatient:
    patient_id = f"{prefix}-{index:06d}"
    admitted = (start + timedelta(days=float(rng.uniform(0.0, span_days)))).replace(microsecond=0)
    demographics = _draw_demographics(rng, admitted)
    age = (admitted.date() - demographics.birth_date).days / 365.25
    course = _draw_course(rng)
    inverted = outcome_inverted is not None and outcome_inverted(demographics, admitted)
    drawn, died, los_days = _draw_outcome(rng, course, age, inverted=inverted)
    discharged = (admitted + timedelta(days=los_days)).replace(microsecond=0)
    finished = reference_time is None or discharged <= reference_time
    disposition = "exp" if drawn else (_pick(rng, _DISPOSITIONS) or "home")  # the stream as ever
    if died != drawn:  # an inverted outcome (no draw: the stream stays the same)
        disposition = "exp" if died else "home"
    stay = Stay(f"{patient_id}-enc", admitted, discharged, died, disposition, finished)
    cutoff = discharged if reference_time is None else min(discharged, reference_time)
    chart = physiology.Charting(
        course=course,
        admitted=admitted,
        end=discharged,
        baselines=physiology.draw_baselines(rng, demographics.gender),
        ventilated=bool(rng.random() < min(0.9, 0.25 + 0.3 * course.z0)),
        extra_labs=tuple(n for n in physiology.EXTRA_LABS if rng.random() < 0.6),
    )
    observations = tuple(
        o
        for o in physiology.generate_observations(rng, chart, patient_id)
        if o.effective < cutoff and o.issued <= cutoff
    )
    anatomy = random_anatomy(rng)
    studies = _draw_studies(rng, course, stay, seed, patient_id, cutoff)
    truth = ground_truth(patient_id, stay, observations, studies, finished)
    return SyntheticPatient(patient_id, index, demographics, stay, anatomy, observations,
                            studies, truth)  # fmt: skip


def _pick(rng: np.random.Generator, options: tuple[tuple[str | None, float], ...]) -> str | None:
    weights = np.array([w for _, w in options])
    return options[int(rng.choice(len(options), p=weights / weights.sum()))][0]


def _draw_demographics(rng: np.random.Generator, admitted: datetime) -> Demographics:
    age_days = int(rng.uniform(18.0, 90.0) * 365.25)
    race_index = int(rng.choice(len(_RACES), p=[w for *_, w in _RACES]))
    code, display, _ = _RACES[race_index]
    return Demographics(
        birth_date=admitted.date() - timedelta(days=age_days),
        gender="female" if rng.random() < 0.45 else "male",
        race_code=code,
        race_display=display,
        ethnicity_code="2135-2" if rng.random() < 0.12 else "2186-5",
        language=_pick(rng, _LANGUAGES),
        marital_status=_pick(rng, _MARITAL),
    )


def _draw_course(rng: np.random.Generator) -> physiology.Course:
    kind = rng.choice(3, p=[0.4, 0.3, 0.3])  # improving, stable, worsening
    low, high = ((-0.6, -0.2), (-0.1, 0.1), (0.2, 0.7))[int(kind)]
    wiggle = tuple(
        (float(rng.uniform(0.03, 0.12)), float(rng.uniform(6.0, 30.0)), float(rng.uniform(0, 6.3)))
        for _ in range(2)
    )
    z0 = float(np.clip(rng.normal(1.0, 0.6), 0.0, 3.0))
    return physiology.Course(z0=z0, slope_per_day=float(rng.uniform(low, high)), wiggle=wiggle)


def _death_risk(z48: float, slope: float, age: float) -> float:
    return 1.0 / (1.0 + math.exp(-(-4.1 + 1.4 * z48 + 2.0 * slope + 0.025 * (age - 60.0))))


def _draw_outcome(
    rng: np.random.Generator, course: physiology.Course, age: float, *, inverted: bool = False
) -> tuple[bool, bool, float]:
    """``(died by the world's rule, died, length of stay in days)``: an inverted patient dies
    by the course mirrored about the typical one (z0 1.0, flat), with the same random draw,
    so the random stream, and everything else about the patient, stays as it was."""
    z48, slope = course.at(48.0), course.slope_per_day
    draw = rng.random()
    drawn = bool(draw < _death_risk(z48, slope, age))
    died = bool(draw < _death_risk(2.0 - z48, -slope, age)) if inverted else drawn
    los = 2.8 + 1.4 * course.z0 + 3.0 * course.slope_per_day + float(rng.normal(0.0, 0.5))
    return drawn, died, float(np.clip(los, 2.05, 9.95))


def _uid(*parts: object) -> str:
    """A deterministic DICOM UID under the UUID-derived root ``2.25`` (PS3.5 B.2)."""
    name = "/".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'dipro-synth:' + name).int}"


def _render_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "big")


def _draw_studies(
    rng: np.random.Generator,
    course: physiology.Course,
    stay: Stay,
    seed: int,
    patient_id: str,
    cutoff: datetime,
) -> tuple[SynthStudy, ...]:
    findings = cxr.draw_findings(rng)
    hours = cxr.draw_cxr_hours(rng, stay.los_days * 24.0)
    studies = []
    for k, (h, when) in enumerate(zip(hours, cxr.acquisition_times(stay.admitted, hours),
                                      strict=True)):  # fmt: skip
        study_uid = _uid(seed, patient_id, k)
        modality = "CR" if rng.random() < 0.6 else "DX"
        view = "AP" if rng.random() < 0.8 else "PA"
        bits = 12 if rng.random() < 0.5 else 16
        photometric = "MONOCHROME1" if rng.random() < 0.3 else "MONOCHROME2"
        j2k = bool(rng.random() < 0.25)
        views = (view, "LL") if rng.random() < 0.2 else (view,)
        images = tuple(
            SynthImage(_uid(seed, patient_id, k, s, "series"), _uid(seed, patient_id, k, s),
                       v, bits, photometric, j2k, _render_seed(seed, patient_id, k, s))
            for s, v in enumerate(views)
        )  # fmt: skip
        report_delay = timedelta(minutes=float(rng.uniform(30.0, 240.0)))
        if when >= cutoff:
            continue  # not acquired yet at the reference time (draws above keep streams fixed)
        studies.append(
            SynthStudy(
                study_uid=study_uid,
                imaging_study_id=f"{patient_id}-cxr-{k}",
                report_id=f"{patient_id}-rad-{k}",
                started=when,
                report_issued=(when + report_delay).replace(microsecond=0),
                modality=modality,
                images=images,
                severity=cxr.severity_at(findings, course, h),
            )
        )
    return tuple(studies)


def ground_truth(
    patient_id: str,
    stay: Stay,
    observations: tuple[SynthObservation, ...],
    studies: tuple[SynthStudy, ...],
    finished: bool,
) -> GroundTruth:
    """What a correct pipeline must find in a stay (values, films, labels) as written."""
    values = sorted(
        (
            TruthValue(m.variable, o.effective, m.canonical_value, o.issued, o.id)
            for o in observations
            if o.usable
            for m in o.measurements
            if m.canonical_value is not None
        ),
        key=lambda v: (v.effective, v.variable),
    )
    images = tuple(
        TruthImage(s.study_uid, s.frontal.series_uid, s.frontal.instance_uid, s.started,
                   s.frontal.view_position)
        for s in studies
    )  # fmt: skip
    pairs = tuple(
        cxr.label_pair(a.severity, b.severity, a.study_uid, b.study_uid)
        for a, b in itertools.pairwise(studies)
    )
    return GroundTruth(
        patient_id=patient_id,
        encounter_id=stay.encounter_id,
        admitted=stay.admitted,
        discharged=stay.discharged,
        outcome_known=finished,
        mortality=int(stay.died),
        los_days=stay.los_days,
        los_bin=los_bin_of(stay.los_days),
        values=tuple(values),
        images=images,
        pairs=pairs,
    )


def age_at(birth_date: date, when: datetime) -> float:
    """Age in years at ``when`` (for tests comparing demographics)."""
    return (when.date() - birth_date).days / 365.25
