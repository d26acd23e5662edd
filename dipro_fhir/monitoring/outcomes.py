"""The daily step that gathers the outcomes of scored stays from FHIR, once they are known.

For every nightly mortality score whose outcome is not known yet (a new score, or a stay that
was still open last time), the stay is read again from FHIR and labelled by the rules training
and evaluation use (:mod:`dipro_fhir.mapping.labels`):

* death: ``Encounter.hospitalization.dischargeDisposition`` through the discharge-outcome
  ConceptMaps, or ``Patient.deceased[x]`` inside the admission (``partOf`` followed); unknown
  while the admission goes on: the stay is ``pending``, counted, never guessed (with the
  days it has been open, so a stay open beyond the monitor's horizon is counted apart);
* length of stay: ``Encounter.period`` end minus start (days, and ``LOS_BINS``);
* progression: the coded radiology report comparing the last two CXR studies acquired before
  the score (``DiagnosticReport.result``).

With it go the groups the stay is counted in (sex, age band and race/ethnicity from the
Patient by the evaluation's rules, the care unit from the Encounter) and, for a death, the
hours from the score to the death (lead time). A patient no longer in FHIR is ``missing``.
Outcomes are stored beside the score (:mod:`dipro_fhir.store.outcomes`); the score is never
changed. Nothing of a patient is logged but counts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dipro.vocab import PROGRESSION_IGNORE
from dipro_fhir.core.errors import ResourceNotFound
from dipro_fhir.core.settings import Settings
from dipro_fhir.evaluation.groups import UNKNOWN, demographic_groups
from dipro_fhir.fhir.source import FhirSource
from dipro_fhir.mapping.demographics import encode_demographics
from dipro_fhir.mapping.labels import (
    LabelRules,
    admission_chain,
    death_period,
    los_bin,
    mortality_label,
    progression_labels,
    stay_period,
)
from dipro_fhir.mapping.times import parse_fhir_time
from dipro_fhir.run import connections
from dipro_fhir.store.outcomes import Outcome, ScoreToFollow, record_outcomes, scores_to_follow

logger = logging.getLogger(__name__)

_UNIT_CHARS = 64


@dataclass(frozen=True, slots=True)
class GatherCounts:
    """What one gathering found (scores followed, by their outcome's status)."""

    followed: int
    known: int
    pending: int
    missing: int

    def to_json(self) -> dict[str, int]:
        """A JSON-able dict."""
        return {
            "followed": self.followed,
            "known": self.known,
            "pending": self.pending,
            "missing": self.missing,
        }


def unit_of(encounter: Mapping[str, Any]) -> str:
    """The care unit of a stay: its last ``Encounter.location`` (display, else the Location's
    id), else its ``Encounter.type`` code, else ``unknown``."""
    for entry in reversed(encounter.get("location") or []):
        location = entry.get("location") if isinstance(entry, dict) else None
        if not isinstance(location, dict):
            continue
        reference = str(location.get("reference") or "")
        name = location.get("display") or reference.rsplit("/", 1)[-1]
        if name:
            return str(name)[:_UNIT_CHARS]
    for concept in encounter.get("type") or []:
        for coding in (concept.get("coding") or []) if isinstance(concept, dict) else []:
            if isinstance(coding, dict) and coding.get("code"):
                return str(coding["code"])[:_UNIT_CHARS]
    return UNKNOWN


def _death_time(
    patient: Mapping[str, Any], chain: Sequence[Mapping[str, Any]], rules: LabelRules
) -> datetime | None:
    """When the patient died: ``deceasedDateTime`` (a day's start when only a date), else the
    end of the admission that ended in death."""
    death = death_period(patient, rules.site_tz)
    if death is not None:
        return death[0]
    return stay_period(chain[-1])[1] or stay_period(chain[0])[1]


def _study_ids_before(studies: Iterable[Mapping[str, Any]], as_of: datetime) -> list[str]:
    """ImagingStudy ids acquired before ``as_of``, oldest first."""
    dated = []
    for study in studies:
        started = parse_fhir_time(study.get("started"))
        if started is not None and started.value < as_of and study.get("id"):
            dated.append((started.value, str(study["id"])))
    return [study_id for _, study_id in sorted(dated)]


@dataclass(frozen=True, slots=True)
class _Stay:
    """One stay read from FHIR (the patient, all its encounters, studies and reports)."""

    patient: Mapping[str, Any]
    encounter: Mapping[str, Any] | None
    encounters: tuple[Mapping[str, Any], ...]
    studies: tuple[Mapping[str, Any], ...]
    reports: tuple[Mapping[str, Any], ...]


def _read_stay(fhir: FhirSource, patient_id: str, encounter_id: str | None) -> _Stay | None:
    try:
        patient = fhir.patient(patient_id)
    except ResourceNotFound:
        return None
    encounters = tuple(fhir.encounters(patient_id))
    encounter = next((e for e in encounters if str(e.get("id")) == encounter_id), None)
    return _Stay(
        patient,
        encounter,
        encounters,
        tuple(fhir.imaging_studies(patient_id)),
        tuple(fhir.diagnostic_reports(patient_id)),
    )


def outcome_of(
    score: ScoreToFollow, stay: _Stay | None, rules: LabelRules, checked_at: datetime
) -> Outcome:
    """The outcome of one score's stay as FHIR holds it now."""
    missing = stay is None or stay.encounter is None
    groups = {"sex": UNKNOWN, "age_band": UNKNOWN, "race_ethnicity": UNKNOWN}
    if stay is not None:
        demographics, _issues = encode_demographics(stay.patient, score.as_of, None, None)
        groups = demographic_groups(demographics)
    if missing or stay is None or stay.encounter is None:
        return Outcome(score.score_id, "missing", None, None, None, None, None,
                       groups["sex"], groups["age_band"], groups["race_ethnicity"],
                       unit=UNKNOWN, checked_at=checked_at)  # fmt: skip
    encounter = stay.encounter
    mortality = mortality_label(stay.patient, encounter, stay.encounters, rules)
    start, end = stay_period(encounter)
    los_days = (end - start) / timedelta(days=1) if start and end else None
    bin_index = None if los_days is None else los_bin(los_days)
    ids = _study_ids_before(stay.studies, score.as_of)
    progression = progression_labels(stay.reports, ids[-2], ids[-1]) if len(ids) >= 2 else None
    if progression is not None and all(v == PROGRESSION_IGNORE for v in progression):
        progression = None
    lead = None
    if mortality == 1.0:
        died_at = _death_time(stay.patient, admission_chain(encounter, stay.encounters), rules)
        lead = None if died_at is None else (died_at - score.as_of) / timedelta(hours=1)
    open_days = (checked_at - start) / timedelta(days=1) if mortality is None and start else None
    return Outcome(
        score_id=score.score_id,
        status="pending" if mortality is None else "known",
        died=None if mortality is None else mortality == 1.0,
        los_days=los_days,
        los_bin=None if bin_index is None or bin_index < 0 else bin_index,
        progression=progression,
        lead_time_h=lead,
        sex=groups["sex"],
        age_band=groups["age_band"],
        race_ethnicity=groups["race_ethnicity"],
        unit=unit_of(encounter),
        checked_at=checked_at,
        open_days=open_days,
    )


def gather_outcomes(
    settings: Settings, as_of: datetime, fhir: FhirSource | None = None
) -> GatherCounts:
    """Gather the outcomes of every nightly score made by ``as_of`` not known yet.

    Args:
        settings: The results database, the FHIR source and the code maps.
        as_of: The monitor's night; scores after it are left for a later night.
        fhir: The FHIR source (default: the configured one).
    """
    engine = connections.engine(settings)
    follow = scores_to_follow(engine, as_of)
    fhir = fhir or connections.fhir_source(settings, images=False)
    rules = LabelRules(
        ZoneInfo(settings.run.site_timezone), connections.code_maps(settings).outcomes
    )
    by_stay: dict[tuple[str, str | None], list[ScoreToFollow]] = defaultdict(list)
    for score in follow:
        by_stay[(score.patient_id, score.encounter_id)].append(score)
    outcomes = []
    for (patient_id, encounter_id), scores in by_stay.items():
        stay = _read_stay(fhir, patient_id, encounter_id)
        outcomes += [outcome_of(s, stay, rules, as_of) for s in scores]
    record_outcomes(engine, outcomes, known_at=as_of)
    counts = GatherCounts(
        followed=len(outcomes),
        known=sum(o.status == "known" for o in outcomes),
        pending=sum(o.status == "pending" for o in outcomes),
        missing=sum(o.status == "missing" for o in outcomes),
    )
    logger.info(
        "outcomes: %d scores followed in %d stays, %d known, %d pending, %d missing",
        counts.followed,
        len(by_stay),
        counts.known,
        counts.pending,
        counts.missing,
    )
    return counts


__all__ = ["GatherCounts", "gather_outcomes", "outcome_of", "unit_of"]
