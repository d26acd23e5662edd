"""``dipro-fhir evaluate``: a checkpoint on the patients of the configured sources.

Patients are those given, or every patient with a finished stay; each is read as of 48 hours
into its first finished stay of at least 48 hours, by the same extraction as scoring, and
scored by the checkpoint, its ablations and its baselines (:mod:`dipro_fhir.evaluation.
evaluate`). The result goes to ``evaluation.json`` and ``evaluation.html``; with ``record``
it also becomes the checkpoint's validation record, the one the scoring gate reads
(:mod:`dipro_fhir.scoring.gate`). A run that found no patient to evaluate fails: it never
reports figures of nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dipro.checkpoint import write_card
from dipro_fhir.core.errors import DiproFhirError
from dipro_fhir.core.settings import Settings
from dipro_fhir.evaluation.baseline import load_baseline
from dipro_fhir.evaluation.evaluate import collect, evaluation_record
from dipro_fhir.evaluation.examples import ExampleCounts, stream_examples
from dipro_fhir.evaluation.provenance import describe_source
from dipro_fhir.evaluation.report import write_evaluation
from dipro_fhir.run import connections
from dipro_fhir.run.extract import extract_options
from dipro_fhir.scoring.card import read_model_card
from dipro_fhir.scoring.scorer import load_model

logger = logging.getLogger(__name__)


class NothingToEvaluate(DiproFhirError):
    """No patient gave an example: there is nothing to measure."""


def evaluate_checkpoint(
    settings: Settings,
    checkpoint: Path,
    out: Path,
    *,
    patient_ids: Sequence[str] = (),
    site: str = "",
    resamples: int = 1000,
    record: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` and write ``evaluation.json`` / ``.html`` into ``out``.

    Args:
        settings: The sources to read patients from.
        checkpoint: The checkpoint folder (with ``baseline.json``).
        out: Output folder.
        patient_ids: Patients to evaluate; empty: all with a finished stay.
        site: The site's label, for the record.
        resamples: Bootstrap resamples.
        record: Also store the record as the checkpoint's validation (model card).
        progress: Called with the number of patients read so far.

    Raises:
        NothingToEvaluate: No patient gave an example.
        ModelContractError: The checkpoint cannot be read.
    """
    loaded = load_model(checkpoint, settings.model.device)
    baseline = load_baseline(checkpoint)
    config = loaded.network.config
    options = extract_options(settings, crop_size=config.crop_size, max_cxrs=config.max_cxrs)
    fhir = connections.fhir_source(settings)
    ids = list(patient_ids) or list(fhir.finished_stay_patients(datetime.now(UTC)))
    counts = ExampleCounts()
    examples = stream_examples(
        fhir, connections.image_source(settings.dicomweb), ids, options, counts, progress
    )
    collector = collect(examples, loaded, baseline)
    if counts.examples == 0:
        raise NothingToEvaluate(
            f"none of {counts.patients} patients gave an example (a finished stay of at least "
            f"48 hours with a known outcome); skipped: {dict(counts.skipped) or 'none'}"
        )
    result = evaluation_record(
        collector, counts, source=describe_source(settings, site), resamples=resamples
    )
    write_evaluation(result, out)
    if record:
        card = read_model_card(checkpoint)
        write_card(dataclasses.replace(card, validation=result), checkpoint)
        logger.info("validation recorded in %s", checkpoint)
    return result
