"""The reference of a checkpoint's inputs, kept in its model card for the monitor's drift.

At training the held-out patients of the test split are summarised as the model saw them
(an :class:`~dipro_fhir.mapping.profile.InputProfile`: coverage and distribution per variable,
films used and unusable, the CXR-pair path) together with the distribution of the
checkpoint's mortality risks on them (the evaluation record's ``risk_histogram``). The entry
goes into the card's validation record as ``input_reference``
(:mod:`dipro_fhir.training.trainer`). For a checkpoint trained before this existed,
:func:`record_input_reference` computes it from any finished stays of the configured sources
(``dipro-fhir monitor reference``; the demo checkpoint's own held-out synthetic cohort).

Training's reference reads its patients at the prediction point (hour 48 of a finished stay,
``sampling`` ``prediction-point``); a night's patients are at every hour of their stays, so a
variable charted once at admission (height) is in every hour-48 window and in few of a
night's, and a night sees more patients with two films. Such a reference is kept, but the
monitor compares nights with it only when told to (``DIPRO_MONITOR__REFERENCE=card``).
:func:`record_input_reference` instead reads each finished stay as the nights of its stay
would have (``sampling`` ``nightly``: one time a day from its first day to its end): nights
compare with that one by default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from dipro.checkpoint import write_card
from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import EncounterId, PatientId, PatientTimeline, RunId
from dipro_fhir.evaluation.evaluate import CHUNK
from dipro_fhir.evaluation.examples import LabelledTimeline
from dipro_fhir.evaluation.run import NothingToEvaluate
from dipro_fhir.fhir.source import FhirSource
from dipro_fhir.imaging.sources import ImageSource
from dipro_fhir.mapping.labels import stay_period
from dipro_fhir.mapping.profile import InputProfile, profile_timeline, profile_timelines
from dipro_fhir.run import connections
from dipro_fhir.run.extract import ExtractOptions, extract_options, extract_patient
from dipro_fhir.scoring.card import read_model_card
from dipro_fhir.scoring.preprocess import Preprocessing
from dipro_fhir.scoring.scorer import has_usable_data, load_model, score_timelines

logger = logging.getLogger(__name__)

REFERENCE_KIND: Final[str] = "dipro-fhir/input-reference/1"
SCORE_BINS: Final[int] = 20


def reference_record(
    profile: InputProfile, risk_histogram: Sequence[int], source: str, *, sampling: str
) -> dict[str, Any]:
    """The model card's ``validation.input_reference`` entry (counts only).

    ``sampling``: ``nightly`` (each stay seen as the nights of its stay saw it: comparable
    with a night) or ``prediction-point`` (each stay at hour 48, as training reads it).
    """
    return {
        "kind": REFERENCE_KIND,
        "source": source,
        "sampling": sampling,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "profile": profile.to_json(),
        "scores": [int(c) for c in risk_histogram],
    }


@dataclass(frozen=True, slots=True)
class CardReference:
    """A model card's input reference."""

    profile: InputProfile
    scores: tuple[int, ...]
    sampling: str
    source: str


def read_reference(validation: Mapping[str, Any]) -> CardReference | None:
    """The reference a validation record holds, if any."""
    record = validation.get("input_reference")
    if not isinstance(record, Mapping) or record.get("kind") != REFERENCE_KIND:
        return None
    return CardReference(
        InputProfile.from_json(record["profile"]),
        tuple(int(c) for c in record["scores"]),
        str(record.get("sampling", "prediction-point")),
        str(record.get("source", "")),
    )


def profile_examples(examples: Iterable[LabelledTimeline], prep: Preprocessing) -> InputProfile:
    """The input profile of labelled examples, with the checkpoint's z-scoring."""
    total = InputProfile()
    for example in examples:
        total = total.merged(profile_timeline(example.timeline, prep.ehr_mean, prep.ehr_std))
    return total


def risk_histogram(risks: Sequence[float]) -> list[int]:
    """Counts of risks in 20 equal bins over [0, 1] (the evaluation record's histogram)."""
    counts = np.histogram(np.asarray(risks, dtype=np.float64), bins=SCORE_BINS, range=(0, 1))[0]
    return [int(c) for c in counts]


def stay_nights(encounter: Mapping[str, Any]) -> list[datetime]:
    """The times a nightly run would see a finished stay: one a day from a point in its
    first day (fixed by the encounter's id, so the same stay gives the same times) to its
    end."""
    start, end = stay_period(encounter)
    if start is None or end is None:
        return []
    key = hashlib.sha256(str(encounter.get("id")).encode()).digest()
    at = start + timedelta(hours=1 + 23 * key[0] / 255)
    times = []
    while at < end:
        times.append(at)
        at += timedelta(days=1)
    return times


def nightly_timelines(
    fhir: FhirSource, images: ImageSource, patient_ids: Iterable[str], options: ExtractOptions
) -> Iterator[PatientTimeline]:
    """Each finished stay of each patient, extracted as the nights of its stay saw it (the
    patients a night would score: a mapped value or a placed film)."""
    for patient_id in patient_ids:
        for encounter in fhir.encounters(patient_id):
            encounter_id = EncounterId(str(encounter.get("id")))
            for as_of in stay_nights(encounter):
                found = extract_patient(fhir, images, PatientId(patient_id), encounter_id,
                                        as_of, options)  # fmt: skip
                if not isinstance(found, PatientFailure) and has_usable_data(found):
                    yield found


def record_input_reference(
    settings: Settings,
    checkpoint: Path,
    *,
    patient_ids: Sequence[str] = (),
    source: str = "",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Compute the reference of ``checkpoint`` from finished stays of the configured sources,
    each seen as the nights of its stay would have seen it, and write it into its model card
    (the weights, and their hash, stay as they are).

    Args:
        settings: The sources to read patients from.
        checkpoint: The checkpoint folder.
        patient_ids: Patients to read; empty: all with a finished stay.
        source: What the patients are, in words (kept in the entry).
        progress: Called with the number of patient-nights read so far.

    Raises:
        NothingToEvaluate: No stay gave a patient-night.
        ModelContractError: The checkpoint cannot be read.
    """
    loaded = load_model(checkpoint, settings.model.device)
    config = loaded.network.config
    options = extract_options(settings, crop_size=config.crop_size, max_cxrs=config.max_cxrs)
    fhir = connections.fhir_source(settings)
    ids = list(patient_ids) or list(fhir.finished_stay_patients(datetime.now(UTC)))
    timelines = nightly_timelines(fhir, connections.image_source(settings.dicomweb), ids, options)
    prep = loaded.preprocessing
    profile, risks, seen = InputProfile(), [], 0
    for chunk in _chunks(timelines, CHUNK):
        profile = profile.merged(profile_timelines(chunk, prep.ehr_mean, prep.ehr_std))
        scores = score_timelines(loaded, chunk, run_id=RunId("reference"))
        risks += [s.probability for s in scores if s.task == "mortality"]
        seen += len(chunk)
        if progress is not None:
            progress(seen)
    if profile.patients == 0:
        raise NothingToEvaluate(f"none of {len(ids)} patients gave a finished stay to read")
    entry = reference_record(
        profile,
        risk_histogram(risks),
        source or f"{len(ids)} patients' finished stays",
        sampling="nightly",
    )
    card = read_model_card(checkpoint)
    write_card(dataclasses.replace(card, validation={**card.validation, "input_reference": entry}),
               checkpoint)  # fmt: skip
    logger.info("input reference of %d patient-nights written to the model card", seen)
    return entry


def _chunks(items: Iterable[PatientTimeline], size: int) -> Iterator[list[PatientTimeline]]:
    chunk: list[PatientTimeline] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
