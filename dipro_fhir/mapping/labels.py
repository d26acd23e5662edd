"""Training labels from FHIR: death, length of stay and CXR progression (DESIGN.md).

* **Mortality**: ``Patient.deceasedDateTime`` inside the stay, or the encounter's
  ``hospitalization.dischargeDisposition`` ``exp`` (expired, HL7 v3 discharge-disposition).
  Unknown (``None``) while the stay has not ended.
* **Length of stay**: ``Encounter.period`` end minus start, in the bins of
  ``dipro.vocab.LOS_BINS`` ([2,3), [3,4), [4,6), >= 6 days); -1 when the stay has not ended
  or lasted under 2 days (the paper's cohort keeps stays over 48 h, reference §1.2).
* **Progression**: the radiology ``DiagnosticReport`` of the later study of the most recent
  consecutive CXR pair, whose ``result`` Observations code a finding
  (``FINDING_SYSTEM``) and a change (``PROGRESSION_SYSTEM``: worsened / improved /
  no_change). Findings the report does not mention get ``PROGRESSION_IGNORE``. Sites with
  other coding would map their codes here.

Pure: raw JSON in, labels out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from dipro.vocab import FINDINGS, LOS_BINS, PROGRESSION_CLASSES, PROGRESSION_IGNORE
from dipro_fhir.mapping.times import parse_fhir_time

FINDING_SYSTEM: Final[str] = "https://dipro-fhir.example.org/CodeSystem/cxr-finding"
PROGRESSION_SYSTEM: Final[str] = "https://dipro-fhir.example.org/CodeSystem/cxr-progression"
_LOS_LOWER_DAYS: Final[tuple[float, ...]] = (2.0, 3.0, 4.0, 6.0)


@dataclass(frozen=True, slots=True)
class Labels:
    """Training targets of one patient (``None`` / -1 / ``PROGRESSION_IGNORE`` = unknown)."""

    mortality: float | None
    los_bin: int
    progression: tuple[int, ...]


def _time(value: object) -> datetime | None:
    parsed = parse_fhir_time(value)
    return None if parsed is None else parsed.value


def _codes(concept: object, system: str | None = None) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [
        str(c["code"])
        for c in concept.get("coding") or []
        if isinstance(c, dict) and c.get("code") and (system is None or c.get("system") == system)
    ]


def stay_period(encounter: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """``Encounter.period`` start and end (``None`` when absent)."""
    period = encounter.get("period") if isinstance(encounter.get("period"), dict) else {}
    assert isinstance(period, dict)
    return _time(period.get("start")), _time(period.get("end"))


def los_bin(days: float) -> int:
    """The index in ``LOS_BINS`` of a stay of ``days``, or -1 under 2 days."""
    index = sum(days >= low for low in _LOS_LOWER_DAYS) - 1
    return index if 0 <= index < len(LOS_BINS) else -1


def mortality_label(patient: Mapping[str, Any], encounter: Mapping[str, Any]) -> float | None:
    """1.0 for an in-hospital death, 0.0 for a discharge alive, ``None`` while in hospital."""
    start, end = stay_period(encounter)
    hospitalization = encounter.get("hospitalization")
    disposition = (
        hospitalization.get("dischargeDisposition") if isinstance(hospitalization, dict) else None
    )
    if "exp" in _codes(disposition):
        return 1.0
    died = _time(patient.get("deceasedDateTime"))
    if died is not None and start is not None and start <= died <= (end or died):
        return 1.0
    return None if end is None else 0.0


def progression_labels(
    reports: Iterable[Mapping[str, Any]], earlier_study_id: str, later_study_id: str
) -> tuple[int, ...]:
    """Per-finding change between two studies, from the report comparing them."""
    labels = [PROGRESSION_IGNORE] * len(FINDINGS)
    for report in reports:
        studies = [
            str(r.get("reference", "")).removeprefix("ImagingStudy/")
            for r in report.get("imagingStudy") or []
            if isinstance(r, dict)
        ]
        if later_study_id not in studies or earlier_study_id not in studies:
            continue
        contained = {c.get("id"): c for c in report.get("contained") or [] if isinstance(c, dict)}
        for ref in report.get("result") or []:
            obs = contained.get(str(ref.get("reference", "")).removeprefix("#"))
            if obs is None:
                continue
            findings = _codes(obs.get("code"), FINDING_SYSTEM)
            changes = _codes(obs.get("valueCodeableConcept"), PROGRESSION_SYSTEM)
            if (
                findings
                and changes
                and findings[0] in FINDINGS
                and changes[0] in PROGRESSION_CLASSES
            ):
                labels[FINDINGS.index(findings[0])] = PROGRESSION_CLASSES.index(changes[0])
    return tuple(labels)


def read_labels(
    patient: Mapping[str, Any],
    encounter: Mapping[str, Any] | None,
    reports: Sequence[Mapping[str, Any]],
    study_ids: Sequence[str],
) -> Labels:
    """All labels of one patient; ``study_ids`` are the timeline's CXR studies, oldest first."""
    if encounter is None:
        mortality, los = None, -1
    else:
        mortality = mortality_label(patient, encounter)
        start, end = stay_period(encounter)
        los = los_bin((end - start) / timedelta(days=1)) if start and end else -1
    progression = (
        progression_labels(reports, study_ids[-2], study_ids[-1])
        if len(study_ids) >= 2
        else (PROGRESSION_IGNORE,) * len(FINDINGS)
    )
    return Labels(mortality, los, progression)
