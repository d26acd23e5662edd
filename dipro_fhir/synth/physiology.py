"""Latent severity and the vital-sign / lab Observations it drives.

Each synthetic stay has one latent severity ``z(t)`` (0 = stable, 3 = critical) with a course
(improving, stable, worsening). Every DiPro variable is ``baseline + effect * z(t) + noise``,
clipped inside the variable map's physiologic range, so patients who worsen show rising HR,
RR, FiO2, creatinine and falling SpO2, BP, GCS: the signal the mortality and LoS labels
(which also follow ``z``) can be learned from.

Codes, canonical units, unit conversions, ranges and baselines all come from
``dipro_fhir.mapping.variables`` (the one variable table); this module only adds the
synthetic dynamics and the charting schedule (vitals every 1-2 h with gaps, labs every
6-24 h).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from dipro_fhir.mapping.code_maps import primary_loinc
from dipro_fhir.mapping.variables import BP_PANEL_LOINC, SPECS_BY_NAME, UnitConversion
from dipro_fhir.synth.records import Measurement, SynthObservation

ALTERNATIVE_UNIT_SHARE = 0.15
ABSENT_SHARE = 0.02
VOIDED_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class Course:
    """The latent severity of one stay: ``z(t) = z0 + slope * days + wiggle``."""

    z0: float
    slope_per_day: float
    wiggle: tuple[tuple[float, float, float], ...]  # (amplitude, period_h, phase)

    def at(self, hours: float) -> float:
        """Severity ``hours`` after admission, in [0, 3.5]."""
        w = sum(a * math.sin(2 * math.pi * hours / p + ph) for a, p, ph in self.wiggle)
        return min(3.5, max(0.0, self.z0 + self.slope_per_day * hours / 24.0 + w))


@dataclass(frozen=True, slots=True)
class _Dynamics:
    """How one variable responds to severity (effect per unit z, noise, between-patient sd)."""

    effect: float
    noise: float
    between: float
    low: float | None = None
    high: float | None = None


# Synthetic dynamics only; every name must be a variable of the map (checked below).
_DYNAMICS: dict[str, _Dynamics] = {
    "heart_rate": _Dynamics(12.0, 4.0, 8.0, 40.0, 180.0),
    "respiratory_rate": _Dynamics(3.5, 1.5, 2.0, 6.0, 45.0),
    "oxygen_saturation": _Dynamics(-2.2, 1.0, 1.0, 70.0, 100.0),
    "fraction_inspired_oxygen": _Dynamics(0.12, 0.03, 0.03, 0.21, 1.0),
    "systolic_blood_pressure": _Dynamics(-8.0, 6.0, 10.0, 60.0, 200.0),
    "diastolic_blood_pressure": _Dynamics(-5.0, 4.0, 6.0, 30.0, 120.0),
    "mean_blood_pressure": _Dynamics(-6.0, 4.0, 7.0, 40.0, 140.0),
    "temperature": _Dynamics(0.35, 0.2, 0.3, 34.5, 41.0),
    "gcs_eye_opening": _Dynamics(-0.5, 0.4, 0.2),
    "gcs_motor_response": _Dynamics(-0.8, 0.4, 0.2),
    "gcs_verbal_response": _Dynamics(-0.7, 0.4, 0.2),
    "urine_output": _Dynamics(-25.0, 25.0, 20.0, 0.0, 600.0),
    "peep": _Dynamics(2.0, 1.0, 1.0, 5.0, 20.0),
    "glucose": _Dynamics(10.0, 15.0, 15.0, 50.0, 400.0),
    "sodium": _Dynamics(0.0, 2.0, 3.0),
    "potassium": _Dynamics(0.15, 0.3, 0.3, 2.5, 6.5),
    "chloride": _Dynamics(0.0, 2.0, 3.0),
    "bicarbonate": _Dynamics(-2.0, 1.5, 2.0, 8.0, 40.0),
    "anion_gap": _Dynamics(2.0, 1.5, 2.0, 3.0, 35.0),
    "blood_urea_nitrogen": _Dynamics(8.0, 3.0, 6.0, 3.0, 150.0),
    "creatinine": _Dynamics(0.4, 0.1, 0.25, 0.3, 10.0),
    "white_blood_cell_count": _Dynamics(3.0, 1.5, 2.0, 0.5, 60.0),
    "platelets": _Dynamics(-30.0, 20.0, 40.0, 10.0, 700.0),
    "hemoglobin": _Dynamics(-0.5, 0.4, 1.0, 5.0, 18.0),
    "hematocrit": _Dynamics(-1.5, 1.2, 3.0, 15.0, 55.0),
    "magnesium": _Dynamics(0.0, 0.2, 0.2, 1.0, 4.0),
    "ph": _Dynamics(-0.04, 0.02, 0.02, 6.9, 7.7),
    "partial_pressure_co2": _Dynamics(3.0, 3.0, 4.0, 20.0, 90.0),
    "albumin": _Dynamics(-0.3, 0.15, 0.4, 1.0, 5.5),
    "bilirubin": _Dynamics(0.5, 0.2, 0.3, 0.1, 20.0),
    "alanine_aminotransferase": _Dynamics(15.0, 8.0, 10.0, 5.0, 2000.0),
    "aspartate_aminotransferase": _Dynamics(20.0, 10.0, 12.0, 5.0, 3000.0),
    "alkaline_phosphatase": _Dynamics(10.0, 10.0, 20.0, 20.0, 800.0),
    "prothrombin_time_inr": _Dynamics(0.2, 0.08, 0.1, 0.8, 8.0),
    "partial_thromboplastin_time": _Dynamics(4.0, 3.0, 4.0, 20.0, 150.0),
    "troponin_t": _Dynamics(0.05, 0.02, 0.03, 0.01, 10.0),
    "height": _Dynamics(0.0, 0.0, 9.0, 145.0, 205.0),
    "weight": _Dynamics(0.0, 0.4, 16.0, 40.0, 200.0),
}

# Realistic non-canonical units a site sends (each must be accepted by the map).
_ALTERNATIVE_UNITS: dict[str, str] = {
    "temperature": "[degF]",
    "weight": "[lb_av]",
    "height": "[in_i]",
    "glucose": "mmol/L",
    "fraction_inspired_oxygen": "%",
    "creatinine": "umol/L",
    "bilirubin": "umol/L",
    "hemoglobin": "g/L",
    "albumin": "g/L",
    "heart_rate": "{beats}/min",
    "respiratory_rate": "{breaths}/min",
    "platelets": "10*9/L",
    "white_blood_cell_count": "10*9/L",
    "sodium": "meq/L",
    "potassium": "meq/L",
    "partial_pressure_co2": "kPa",
}

_VITALS = ("heart_rate", "respiratory_rate", "oxygen_saturation", "fraction_inspired_oxygen")
_GCS = ("gcs_eye_opening", "gcs_motor_response", "gcs_verbal_response")
_CORE_LABS = (
    "sodium", "potassium", "chloride", "bicarbonate", "anion_gap", "blood_urea_nitrogen",
    "creatinine", "glucose", "hemoglobin", "hematocrit", "platelets", "white_blood_cell_count",
    "magnesium",
)  # fmt: skip
EXTRA_LABS = (
    "ph", "partial_pressure_co2", "albumin", "bilirubin", "alanine_aminotransferase",
    "aspartate_aminotransferase", "alkaline_phosphatase", "prothrombin_time_inr",
    "partial_thromboplastin_time", "troponin_t",
)  # fmt: skip

for _name, _unit in _ALTERNATIVE_UNITS.items():  # import-time contract with the map
    if _unit not in SPECS_BY_NAME[_name].accepted_units:  # pragma: no cover
        raise ImportError(f"synthetic unit {_unit} not accepted by the map for {_name}")
if set(_DYNAMICS) != set(SPECS_BY_NAME):  # pragma: no cover
    raise ImportError("synthetic dynamics must cover exactly the map's variables")


@dataclass(frozen=True, slots=True)
class Charting:
    """Per-stay state the observation generator needs."""

    course: Course
    admitted: datetime
    end: datetime
    baselines: dict[str, float]
    ventilated: bool
    extra_labs: tuple[str, ...]


def draw_baselines(rng: np.random.Generator, gender: str) -> dict[str, float]:
    """Per-patient baselines: the map's normal value plus between-patient variation."""
    out: dict[str, float] = {}
    for name, dyn in _DYNAMICS.items():
        normal = SPECS_BY_NAME[name].normal
        if name == "height":
            normal = 177.0 if gender == "male" else 163.0
        out[name] = normal + float(rng.normal(0.0, dyn.between))
    return out


def generate_observations(
    rng: np.random.Generator, chart: Charting, patient_id: str
) -> Iterator[SynthObservation]:
    """Yield the stay's Observations in effective-time order."""
    counter = iter(range(1_000_000))
    events: list[tuple[datetime, str, tuple[str, ...]]] = []
    events += [(t, "vital-signs", names) for t, names in _vital_times(rng, chart)]
    events += [(t, "laboratory", names) for t, names in _lab_times(rng, chart)]
    events.append((chart.admitted + timedelta(minutes=20), "vital-signs", ("height",)))
    day = chart.admitted + timedelta(minutes=25)
    while day < chart.end:
        events.append((day, "vital-signs", ("weight",)))
        day += timedelta(days=1)
    events.sort(key=lambda e: (e[0], e[2]))
    for when, category, names in events:
        for group in _group_bp(names):
            obs_id = f"{patient_id}-obs-{next(counter):05d}"
            yield _observation(rng, chart, obs_id, category, when, group)


def _vital_times(
    rng: np.random.Generator, chart: Charting
) -> Iterator[tuple[datetime, tuple[str, ...]]]:
    t = float(rng.uniform(0.05, 0.5))
    stay_h = (chart.end - chart.admitted) / timedelta(hours=1)
    k = 0
    while t < stay_h - 0.1:
        names = [n for n in _VITALS if rng.random() < 0.95]
        names += ["systolic_blood_pressure", "mean_blood_pressure"] if rng.random() < 0.95 else []
        if chart.ventilated:
            names.append("peep")
        if k % 3 == 0:
            names += ["temperature", *_GCS]
        names.append("urine_output")
        yield _at(chart.admitted, t), tuple(names)
        t += float(rng.uniform(1.0, 2.0) + rng.normal(0.0, 0.08))
        if rng.random() < 0.05:  # a charting gap
            t += float(rng.uniform(2.0, 4.0))
        k += 1


def _lab_times(
    rng: np.random.Generator, chart: Charting
) -> Iterator[tuple[datetime, tuple[str, ...]]]:
    t = float(rng.uniform(0.3, 3.0))
    stay_h = (chart.end - chart.admitted) / timedelta(hours=1)
    while t < stay_h - 0.5:
        names = tuple(n for n in (*_CORE_LABS, *chart.extra_labs) if rng.random() < 0.97)
        yield _at(chart.admitted, t), names
        t += float(rng.uniform(6.0, 24.0))


def _at(admitted: datetime, hours: float) -> datetime:
    return (admitted + timedelta(hours=hours)).replace(microsecond=0)


def _group_bp(names: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Systolic travels with diastolic as the BP panel (FHIR vital-signs profile)."""
    for name in names:
        if name == "systolic_blood_pressure":
            yield ("systolic_blood_pressure", "diastolic_blood_pressure")
        elif name != "diastolic_blood_pressure":
            yield (name,)


def _observation(
    rng: np.random.Generator,
    chart: Charting,
    obs_id: str,
    category: str,
    when: datetime,
    names: tuple[str, ...],
) -> SynthObservation:
    hours = (when - chart.admitted) / timedelta(hours=1)
    absent = rng.random() < ABSENT_SHARE
    measurements = tuple(
        _measure(rng, name, None if absent else _true_value(rng, chart, name, hours))
        for name in names
    )
    roll = rng.random()
    status = "final"
    if roll < VOIDED_SHARE:
        status = "cancelled" if rng.random() < 0.5 else "entered-in-error"
    elif roll < 2 * VOIDED_SHARE:
        status = "amended"
    delay_min = rng.uniform(5.0, 20.0) if category == "vital-signs" else rng.uniform(25.0, 60.0)
    return SynthObservation(
        id=obs_id,
        category=category,
        effective=when,
        issued=(when + timedelta(minutes=float(delay_min))).replace(microsecond=0),
        status=status,
        measurements=measurements,
        panel_loinc=BP_PANEL_LOINC if len(names) > 1 else None,
        absent_reason="not-performed" if absent else None,
    )


def _true_value(rng: np.random.Generator, chart: Charting, name: str, hours: float) -> float:
    dyn = _DYNAMICS[name]
    spec = SPECS_BY_NAME[name]
    z = chart.course.at(hours)
    value = chart.baselines[name] + dyn.effect * z + float(rng.normal(0.0, dyn.noise))
    low = dyn.low if dyn.low is not None else spec.valid_range[0]
    high = dyn.high if dyn.high is not None else spec.valid_range[1]
    value = min(high, max(low, value))
    if spec.kind == "ordinal":
        value = float(round(value))
    return value


def _measure(rng: np.random.Generator, name: str, canonical: float | None) -> Measurement:
    spec = SPECS_BY_NAME[name]
    unit = spec.canonical_unit
    if name in _ALTERNATIVE_UNITS and rng.random() < ALTERNATIVE_UNIT_SHARE:
        unit = _ALTERNATIVE_UNITS[name]
    loinc = primary_loinc(name)
    if name == "glucose" and unit == "mmol/L":
        loinc = "15074-8"  # the molar glucose code (in the map's list for glucose)
    if canonical is None:
        return Measurement(name, loinc, None, unit, None)
    conversion = next(c for c in spec.conversions if c.unit == unit)
    reported = _round(_from_canonical(canonical, conversion), spec.kind == "ordinal")
    truth = reported * conversion.scale + conversion.offset  # the map's affine conversion
    return Measurement(name, loinc, reported, unit, truth)


def _from_canonical(value: float, conversion: UnitConversion) -> float:
    return (value - conversion.offset) / conversion.scale


def _round(value: float, ordinal: bool) -> float:
    """Round to what a device or lab reports: integers for scores, ~4 significant digits."""
    if ordinal or value == 0.0:
        return float(round(value))
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    return round(value, digits)
