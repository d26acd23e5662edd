"""Labelled examples: each patient's first finished stay, extracted at the prediction point.

Training and evaluation see a patient exactly as a nightly run would: the same extraction and
mapping code, as of 48 hours after the stay began (the paper's prediction point, reference
§1.7), for stays of at least 48 hours that have ended (so the outcome is known). Labels come
from FHIR by the rules of :mod:`dipro_fhir.mapping.labels`. A patient that gives no example is
counted with its reason, never silently dropped (:class:`ExampleCounts`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dipro_fhir.core.errors import ResourceNotFound
from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.timeline import EncounterId, PatientId, PatientTimeline
from dipro_fhir.fhir.matching import is_under_way
from dipro_fhir.fhir.source import FhirSource
from dipro_fhir.imaging.sources import ImageSource
from dipro_fhir.mapping.labels import LabelRules, Labels, read_labels, stay_period
from dipro_fhir.run.extract import ExtractOptions, extract_patient

logger = logging.getLogger(__name__)

PREDICTION_HOUR = 48.0


@dataclass(frozen=True, slots=True)
class LabelledTimeline:
    """One example: the timeline as of the prediction point and the stay's labels."""

    timeline: PatientTimeline
    labels: Labels


@dataclass(slots=True)
class ExampleCounts:
    """Patients read and why some gave no example (reason -> count)."""

    patients: int = 0
    examples: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    first_as_of: datetime | None = None
    last_as_of: datetime | None = None

    def add(self, example: LabelledTimeline | str) -> None:
        """Count one patient's outcome."""
        self.patients += 1
        if isinstance(example, str):
            self.skipped[example] += 1
            return
        self.examples += 1
        as_of = example.timeline.as_of
        self.first_as_of = as_of if self.first_as_of is None else min(self.first_as_of, as_of)
        self.last_as_of = as_of if self.last_as_of is None else max(self.last_as_of, as_of)

    def to_json(self) -> dict[str, object]:
        """JSON form: counts and the range of prediction times (no patient ids)."""
        return {
            "patients": self.patients,
            "examples": self.examples,
            "skipped": dict(sorted(self.skipped.items())),
            "first_prediction_time": None
            if self.first_as_of is None
            else self.first_as_of.isoformat(),
            "last_prediction_time": None
            if self.last_as_of is None
            else self.last_as_of.isoformat(),
        }


def _stay_start(encounter: Mapping[str, Any]) -> datetime:
    """Sort key: when the stay began (a stay without a readable start sorts last)."""
    start, _ = stay_period(encounter)
    return start or datetime.max.replace(tzinfo=UTC)


def labelled_example(
    fhir: FhirSource, images: ImageSource, patient_id: PatientId, options: ExtractOptions
) -> LabelledTimeline | str:
    """The patient's first finished stay of at least 48 h at hour 48, or why there is none.

    Reasons: ``patient-not-found``, ``no-finished-stay`` (no stay of 48 h or more has
    ended), ``extract:<reason>`` (extraction failed: the pipeline's failure reason),
    ``outcome-unknown`` (no mortality label can be read).
    """
    try:
        encounters = list(fhir.encounters(patient_id))
        patient = fhir.patient(patient_id)
    except ResourceNotFound:
        return "patient-not-found"
    rule = options.cohort
    for encounter in sorted(encounters, key=_stay_start):  # the first stay by date, not file
        start, end = stay_period(encounter)
        if start is None or end is None or end - start < timedelta(hours=PREDICTION_HOUR):
            continue
        as_of = start + timedelta(hours=PREDICTION_HOUR)
        admitted = rule.admits(encounter, as_of) if rule.kind == "class" else None
        if not (admitted if admitted is not None else is_under_way(encounter, as_of)):
            continue
        encounter_id = EncounterId(str(encounter["id"]))
        timeline = extract_patient(fhir, images, patient_id, encounter_id, as_of, options)
        if isinstance(timeline, PatientFailure):
            return f"extract:{timeline.reason}"
        studies = [i.imaging_study.id for i in timeline.images if i.imaging_study is not None]
        reports = list(fhir.diagnostic_reports(patient_id))
        rules = LabelRules(options.site_tz, options.code_maps.outcomes)
        labels = read_labels(patient, encounter, reports, studies, encounters, rules)
        if labels.mortality is None:
            return "outcome-unknown"
        return LabelledTimeline(timeline, labels)
    return "no-finished-stay"


def stream_examples(
    fhir: FhirSource,
    images: ImageSource,
    patient_ids: Iterable[str],
    options: ExtractOptions,
    counts: ExampleCounts,
    progress: Callable[[int], None] | None = None,
) -> Iterator[LabelledTimeline]:
    """Yield each patient's example, one at a time (constant memory), counting in ``counts``.

    Args:
        fhir: The FHIR source.
        images: The image source.
        patient_ids: Patients to read.
        options: Extraction options (the model's crop size and sequence length).
        counts: Filled with patients read, examples and skip reasons.
        progress: Called with the number of patients read so far.
    """
    for done, patient_id in enumerate(patient_ids, start=1):
        example = labelled_example(fhir, images, PatientId(patient_id), options)
        counts.add(example)
        if isinstance(example, str):
            logger.debug("no example: %s", example)
        else:
            yield example
        if progress is not None:
            progress(done)
