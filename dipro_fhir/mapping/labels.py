"""Training labels from FHIR: death, length of stay and CXR progression (DESIGN.md).

* **Mortality** (in-hospital): the stay's *hospital admission* decides. An ICU stay takes
  the outcome of the admission it is part of (``Encounter.partOf``, followed up to the
  outermost encounter known; MIMIC-IV on FHIR links ICU stays to their admission this way).
  Death is read from ``Encounter.hospitalization.dischargeDisposition`` of the stay or any
  encounter it is part of, through the discharge-outcome ConceptMaps (HL7 ``exp``, and
  local codes such as ``DIED`` or ``EXPIRED``: :mod:`dipro_fhir.mapping.code_maps`), or from
  ``Patient.deceasedDateTime`` falling inside the admission's ``period``. A date-only
  ``deceasedDateTime`` is a whole *day in the site's time zone* (not 00:00 UTC): a death on
  the day of an evening admission is inside it. Unknown (``None``) while the admission has
  not ended and no death is recorded.
* **Length of stay**: the stay's own ``Encounter.period`` end minus start, in the bins of
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

from dipro.vocab import FINDINGS, LOS_BINS, PROGRESSION_CLASSES, PROGRESSION_IGNORE
from dipro_fhir.mapping.code_maps import default_code_maps
from dipro_fhir.mapping.concept_map import CodeTable
from dipro_fhir.mapping.times import parse_fhir_time

FINDING_SYSTEM: Final[str] = "https://dipro-fhir.example.org/CodeSystem/cxr-finding"
PROGRESSION_SYSTEM: Final[str] = "https://dipro-fhir.example.org/CodeSystem/cxr-progression"
_LOS_LOWER_DAYS: Final[tuple[float, ...]] = (2.0, 3.0, 4.0, 6.0)


@dataclass(frozen=True, slots=True)
class LabelRules:
    """The site conventions labels depend on.

    Attributes:
        site_tz: The zone a date-only ``deceasedDateTime`` is a day in.
        outcomes: Discharge dispositions -> ``died`` (default: the shipped map).
    """

    site_tz: tzinfo = UTC
    outcomes: CodeTable = field(default_factory=lambda: default_code_maps().outcomes)


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


def death_period(
    patient: Mapping[str, Any], site_tz: tzinfo = UTC
) -> tuple[datetime, datetime] | None:
    """``Patient.deceasedDateTime`` as ``[start, end)`` in UTC, or ``None``.

    A full dateTime is an instant (``end == start``); a date-only value is that whole day in
    ``site_tz``; coarser values (year, month) say too little and give ``None``.
    """
    raw = patient.get("deceasedDateTime")
    parsed = parse_fhir_time(raw)
    if parsed is None or parsed.precision in ("year", "month"):
        return None
    if parsed.precision == "time":
        return parsed.value, parsed.value
    day = parsed.value.date()
    start = datetime(day.year, day.month, day.day, tzinfo=site_tz)
    try:
        return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)
    except OverflowError:  # the first or last day FHIR allows has no whole day in UTC
        return parsed.value, parsed.value


def admission_chain(
    encounter: Mapping[str, Any], encounters: Iterable[Mapping[str, Any]] = ()
) -> list[Mapping[str, Any]]:
    """The stay and the encounters it is part of (``Encounter.partOf``), innermost first.

    Stops at an encounter whose parent is not among ``encounters`` or at a cycle.
    """
    by_id = {str(e.get("id")): e for e in encounters if isinstance(e, Mapping)}
    chain = [encounter]
    while len(chain) <= len(by_id):
        part_of = chain[-1].get("partOf")
        ref = part_of.get("reference") if isinstance(part_of, dict) else None
        parent = by_id.get(str(ref).rsplit("/", 1)[-1]) if isinstance(ref, str) else None
        if parent is None or any(parent is e for e in chain):
            break
        chain.append(parent)
    return chain


def died_by_disposition(encounter: Mapping[str, Any], outcomes: CodeTable) -> bool:
    """Whether ``hospitalization.dischargeDisposition`` maps to the outcome ``died``."""
    hospitalization = encounter.get("hospitalization")
    disposition = (
        hospitalization.get("dischargeDisposition") if isinstance(hospitalization, dict) else None
    )
    codings = disposition.get("coding") if isinstance(disposition, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if not isinstance(coding, dict):
            continue
        found = outcomes.lookup(coding.get("system"), coding.get("code"))
        if found is not None and found.target_code == "died":
            return True
    return False


def mortality_label(
    patient: Mapping[str, Any],
    encounter: Mapping[str, Any],
    encounters: Iterable[Mapping[str, Any]] = (),
    rules: LabelRules | None = None,
) -> float | None:
    """1.0 for a death in the hospital admission, 0.0 for a discharge alive, ``None`` while
    the admission goes on.

    Args:
        patient: The Patient (``deceasedDateTime``).
        encounter: The stay (an ICU stay, or the admission itself).
        encounters: The patient's encounters, to follow ``partOf`` to the admission.
        rules: Site time zone and discharge-outcome map.
    """
    rules = rules or LabelRules()
    chain = admission_chain(encounter, encounters)
    if any(died_by_disposition(e, rules.outcomes) for e in chain):
        return 1.0
    start, end = stay_period(chain[-1])
    start = start or stay_period(encounter)[0]
    death = death_period(patient, rules.site_tz)
    if death is not None and start is not None and _overlaps(death, start, end):
        return 1.0
    return None if end is None else 0.0


def _overlaps(death: tuple[datetime, datetime], start: datetime, end: datetime | None) -> bool:
    """Whether a death (an instant, or a day) falls in ``[start, end]`` (``end`` open)."""
    after_start = death[0] >= start or death[1] > start
    return after_start and (end is None or death[0] <= end)


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
    encounters: Sequence[Mapping[str, Any]] = (),
    rules: LabelRules | None = None,
) -> Labels:
    """All labels of one patient; ``study_ids`` are the timeline's CXR studies, oldest first.

    ``encounters`` (all of the patient's) let an ICU stay take its admission's outcome.
    """
    if encounter is None:
        mortality, los = None, -1
    else:
        mortality = mortality_label(patient, encounter, encounters, rules)
        start, end = stay_period(encounter)
        los = los_bin((end - start) / timedelta(days=1)) if start and end else -1
    progression = (
        progression_labels(reports, study_ids[-2], study_ids[-1])
        if len(study_ids) >= 2
        else (PROGRESSION_IGNORE,) * len(FINDINGS)
    )
    return Labels(mortality, los, progression)
