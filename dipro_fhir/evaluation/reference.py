"""The reference of a checkpoint's inputs, kept in its model card for the monitor's drift.

At training the held-out patients of the test split are summarised as the model saw them
(an :class:`~dipro_fhir.mapping.profile.InputProfile`: coverage and distribution per variable,
films used and unusable, the CXR-pair path) together with the distribution of the
checkpoint's mortality risks on them (the evaluation record's ``risk_histogram``). The entry
goes into the card's validation record as ``input_reference``
(:mod:`dipro_fhir.training.trainer`). For a checkpoint trained before this existed,
:func:`record_input_reference` computes it from any finished stays of the configured sources
(``dipro-fhir monitor reference``; the demo checkpoint's own held-out synthetic cohort).

These patients are read at the prediction point (hour 48 of a finished stay); a night's
patients are at every hour of their stays. Coverage of slow labs is therefore somewhat higher
in such a reference than on a night; docs/monitoring.md says when a site should prefer its
first nights (``DIPRO_MONITOR__REFERENCE=nights``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from dipro.checkpoint import write_card
from dipro.predictions import predict
from dipro_fhir.core.settings import Settings
from dipro_fhir.evaluation.evaluate import CHUNK, targets_of
from dipro_fhir.evaluation.examples import ExampleCounts, LabelledTimeline, stream_examples
from dipro_fhir.evaluation.run import NothingToEvaluate
from dipro_fhir.mapping.profile import InputProfile, profile_timeline
from dipro_fhir.run import connections
from dipro_fhir.run.extract import extract_options
from dipro_fhir.scoring.card import read_model_card
from dipro_fhir.scoring.preprocess import Preprocessing, collate
from dipro_fhir.scoring.scorer import LoadedModel, load_model

logger = logging.getLogger(__name__)

REFERENCE_KIND: Final[str] = "dipro-fhir/input-reference/1"
SCORE_BINS: Final[int] = 20


def reference_record(
    profile: InputProfile, risk_histogram: Sequence[int], source: str
) -> dict[str, Any]:
    """The model card's ``validation.input_reference`` entry (counts only)."""
    return {
        "kind": REFERENCE_KIND,
        "source": source,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "profile": profile.to_json(),
        "scores": [int(c) for c in risk_histogram],
    }


def read_reference(validation: Mapping[str, Any]) -> tuple[InputProfile, tuple[int, ...]] | None:
    """The profile and risk histogram a validation record's reference holds, if any."""
    record = validation.get("input_reference")
    if not isinstance(record, Mapping) or record.get("kind") != REFERENCE_KIND:
        return None
    return InputProfile.from_json(record["profile"]), tuple(int(c) for c in record["scores"])


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


def _risks(loaded: LoadedModel, examples: Sequence[LabelledTimeline]) -> list[float]:
    config = loaded.network.config
    batch = collate([e.timeline for e in examples], loaded.preprocessing,
                    max_cxrs=config.max_cxrs, crop_size=config.crop_size)  # fmt: skip
    pred = predict(loaded.network, [(batch, targets_of(examples))], loaded.calibration)
    return [] if pred.mortality is None else [float(p) for p in pred.mortality]


def record_input_reference(
    settings: Settings,
    checkpoint: Path,
    *,
    patient_ids: Sequence[str] = (),
    source: str = "",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Compute the reference of ``checkpoint`` from finished stays of the configured sources
    and write it into its model card (the weights, and their hash, stay as they are).

    Args:
        settings: The sources to read patients from.
        checkpoint: The checkpoint folder.
        patient_ids: Patients to read; empty: all with a finished stay.
        source: What the patients are, in words (kept in the entry).
        progress: Called with the number of patients read so far.

    Raises:
        NothingToEvaluate: No patient gave an example.
        ModelContractError: The checkpoint cannot be read.
    """
    loaded = load_model(checkpoint, settings.model.device)
    config = loaded.network.config
    options = extract_options(settings, crop_size=config.crop_size, max_cxrs=config.max_cxrs)
    fhir = connections.fhir_source(settings)
    ids = list(patient_ids) or list(fhir.finished_stay_patients(datetime.now(UTC)))
    counts = ExampleCounts()
    examples = stream_examples(
        fhir, connections.image_source(settings.dicomweb), ids, options, counts, progress
    )
    profile, risks, chunk = InputProfile(), [], []
    for example in examples:
        chunk.append(example)
        if len(chunk) == CHUNK:
            profile = profile.merged(profile_examples(chunk, loaded.preprocessing))
            risks += _risks(loaded, chunk)
            chunk = []
    if chunk:
        profile = profile.merged(profile_examples(chunk, loaded.preprocessing))
        risks += _risks(loaded, chunk)
    if counts.examples == 0:
        raise NothingToEvaluate(
            f"none of {counts.patients} patients gave an example; skipped: "
            f"{dict(counts.skipped) or 'none'}"
        )
    entry = reference_record(
        profile, risk_histogram(risks), source or f"{counts.examples} finished stays at hour 48"
    )
    card = read_model_card(checkpoint)
    validation = {**card.validation, "input_reference": entry}
    write_card(dataclasses.replace(card, validation=validation), checkpoint)
    logger.info("input reference of %d patients written to the model card", counts.examples)
    return entry
