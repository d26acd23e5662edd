"""Chest X-ray schedule, per-finding per-region severity, and progression labels.

A stay has 2-6 CXR studies at least 8 h apart (the gap filter of reference §1.3). Each of the
7 findings the patient has follows its own level ``g_f(t)``, driven by the stay's latent
severity with a finding-specific sensitivity (an enlarged cardiac silhouette barely moves, as
in reference §3.1 Table 5) plus a small independent drift, spread over the regions it touches
by a fixed footprint. Labels of a consecutive pair come from the change of that level
(reference §3.1: worsened / improved / no change, 3 = not mentioned).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from dipro.vocab import FINDINGS, PROGRESSION_CLASSES, PROGRESSION_IGNORE, REGIONS
from dipro_fhir.synth.physiology import Course
from dipro_fhir.synth.records import PairLabel

#: Minimum spacing of kept CXRs (reference §1.3).
MIN_GAP_H = 8.0
#: A change of the level below this is "no change".
CHANGE_THRESHOLD = 0.05

_WORSENED = PROGRESSION_CLASSES.index("worsened")
_IMPROVED = PROGRESSION_CLASSES.index("improved")
_NO_CHANGE = PROGRESSION_CLASSES.index("no_change")

_PREVALENCE = {
    "atelectasis": 0.5,
    "enlarged_cardiac_silhouette": 0.35,
    "consolidation": 0.3,
    "pulmonary_edema": 0.4,
    "lung_opacity": 0.6,
    "pleural_effusion": 0.45,
    "pneumonia": 0.3,
}
# Regions each finding can touch ("L"/"R" sided ones pick a side per patient).
_FOOTPRINT: dict[str, tuple[str, ...]] = {
    "atelectasis": ("lower_lung_zone", "lung"),
    "enlarged_cardiac_silhouette": ("cardiac_silhouette", "mediastinum"),
    "consolidation": ("lower_lung_zone", "lung"),
    "pulmonary_edema": ("lung", "hilar_structures", "lower_lung_zone"),
    "lung_opacity": ("lung", "lower_lung_zone"),
    "pleural_effusion": ("costophrenic_angle", "lower_lung_zone"),
    "pneumonia": ("lower_lung_zone", "lung"),
}
_BILATERAL = {"pulmonary_edema", "enlarged_cardiac_silhouette"}


@dataclass(frozen=True, slots=True)
class FindingCourse:
    """One finding of one patient: level ``a + k * (z(t) - z0) + drift * days``."""

    finding: str
    base: float
    sensitivity: float
    drift_per_day: float
    footprint: tuple[float, ...]  # [R]

    def level(self, course: Course, hours: float) -> float:
        """The finding's overall level in [0, 1] at ``hours`` after admission."""
        z_change = course.at(hours) - course.z0
        value = self.base + self.sensitivity * z_change + self.drift_per_day * hours / 24.0
        return min(1.0, max(0.0, value))


def draw_findings(rng: np.random.Generator) -> tuple[FindingCourse, ...]:
    """The patient's active findings (at least one)."""
    active = [f for f in FINDINGS if rng.random() < _PREVALENCE[f]]
    if not active:
        active = [FINDINGS[int(rng.integers(len(FINDINGS)))]]
    return tuple(_draw_finding(rng, f) for f in active)


def _draw_finding(rng: np.random.Generator, finding: str) -> FindingCourse:
    sides = (
        ("left", "right")
        if finding in _BILATERAL or rng.random() < 0.4
        else (("left",) if rng.random() < 0.5 else ("right",))
    )
    footprint = []
    for region in REGIONS:
        touched = any(region.endswith(p) for p in _FOOTPRINT[finding])
        sided = not region.startswith(("left_", "right_")) or region.split("_")[0] in sides
        footprint.append(float(rng.uniform(0.6, 1.0)) if touched and sided else 0.0)
    stable = finding == "enlarged_cardiac_silhouette"
    return FindingCourse(
        finding=finding,
        base=float(rng.uniform(0.25, 0.7)),
        sensitivity=0.03 if stable else float(rng.uniform(0.2, 0.4)),
        drift_per_day=0.0 if stable else float(rng.normal(0.0, 0.04)),
        footprint=tuple(footprint),
    )


def draw_cxr_hours(rng: np.random.Generator, stay_hours: float) -> tuple[float, ...]:
    """2..6 acquisition times (hours after admission), >= 8 h apart, inside the stay."""
    wanted = int(rng.choice([2, 3, 4, 5, 6], p=[0.3, 0.3, 0.2, 0.12, 0.08]))
    hours = [float(rng.uniform(0.5, 10.0))]
    while len(hours) < wanted:
        nxt = hours[-1] + MIN_GAP_H + 0.01 + float(rng.exponential(10.0))
        if nxt > stay_hours - 1.0:
            nxt = hours[-1] + MIN_GAP_H + 0.01 + float(rng.uniform(0.0, 2.0))
            if nxt > stay_hours - 0.5 or len(hours) >= 2:
                break
        hours.append(nxt)
    return tuple(hours)


def severity_at(
    findings: tuple[FindingCourse, ...], course: Course, hours: float
) -> tuple[tuple[float, ...], ...]:
    """Severity ``[F][R]`` at one time; zero for findings the patient does not have."""
    by_name = {f.finding: f for f in findings}
    rows = []
    for name in FINDINGS:
        fc = by_name.get(name)
        level = fc.level(course, hours) if fc else 0.0
        rows.append(tuple(round(level * w, 4) for w in (fc.footprint if fc else (0.0,) * 10)))
    return tuple(rows)


def label_pair(
    earlier: tuple[tuple[float, ...], ...],
    later: tuple[tuple[float, ...], ...],
    earlier_uid: str,
    later_uid: str,
) -> PairLabel:
    """Progression labels of a consecutive pair from the two severity maps."""
    labels = []
    for f in range(len(FINDINGS)):
        labels.append(_classify(max(earlier[f]), max(later[f])))
    region_labels = tuple(
        tuple(_classify(earlier[f][r], later[f][r]) for f in range(len(FINDINGS)))
        for r in range(len(REGIONS))
    )
    return PairLabel(earlier_uid, later_uid, tuple(labels), region_labels)


def _classify(before: float, after: float) -> int:
    if max(before, after) <= CHANGE_THRESHOLD:
        return PROGRESSION_IGNORE
    if after - before > CHANGE_THRESHOLD:
        return _WORSENED
    if before - after > CHANGE_THRESHOLD:
        return _IMPROVED
    return _NO_CHANGE


def acquisition_times(admitted: datetime, hours: tuple[float, ...]) -> tuple[datetime, ...]:
    """Acquisition datetimes at whole seconds (DICOM DT precision used here)."""
    return tuple((admitted + timedelta(hours=h)).replace(microsecond=0) for h in hours)
