"""Train a DiPro checkpoint from FHIR + DICOMweb data with the project's own trainer.

Training examples are built by the same extraction and mapping code that scoring uses, at the
paper's prediction point: 48 hours after admission (reference §1.7), for finished stays of
at least 48 hours. Labels come from FHIR (:mod:`dipro_fhir.mapping.labels`). Normalisation
statistics are fitted on the training split only and stored in the model card, so scoring
applies exactly what training saw (reference §7.1.11).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch

from dipro.batch import DiproTargets
from dipro.checkpoint import save_checkpoint
from dipro.config import DiproConfig
from dipro.losses import estimate_class_balance
from dipro.network import DiPro
from dipro.train import Example, FitSettings, evaluate, fit, seed_everything
from dipro_fhir.dicomweb.source import ImageSource
from dipro_fhir.extract import ExtractOptions, extract_patient
from dipro_fhir.fhir.matching import is_under_way
from dipro_fhir.fhir.source import FhirSource
from dipro_fhir.mapping.labels import LabelRules, Labels, read_labels, stay_period
from dipro_fhir.scoring.preprocess import Preprocessing, collate, fit_preprocessing
from dipro_fhir.scoring.score import PatientFailure
from dipro_fhir.timeline import EncounterId, PatientId, PatientTimeline

logger = logging.getLogger(__name__)

PREDICTION_HOUR = 48.0
INTENDED_USE = (
    "Demonstration and integration testing only. Trained on a synthetic cohort; "
    "NOT FOR CLINICAL USE."
)


@dataclass(frozen=True, slots=True)
class LabelledTimeline:
    """One training example before batching."""

    timeline: PatientTimeline
    labels: Labels


def collect_examples(
    fhir: FhirSource,
    images: ImageSource,
    patient_ids: Iterable[str],
    options: ExtractOptions,
    progress: Callable[[int], None] | None = None,
) -> list[LabelledTimeline]:
    """Extract each patient's first finished stay at hour 48, with its labels."""
    found: list[LabelledTimeline] = []
    for count, patient_id in enumerate(patient_ids, start=1):
        example = _example(fhir, images, PatientId(patient_id), options)
        if example is not None:
            found.append(example)
        if progress is not None:
            progress(count)
    return found


def _example(
    fhir: FhirSource, images: ImageSource, patient_id: PatientId, options: ExtractOptions
) -> LabelledTimeline | None:
    encounters = list(fhir.encounters(patient_id))
    rule = options.cohort
    for encounter in encounters:
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
            logger.warning("training example skipped: %s", timeline.reason)
            return None
        studies = [i.imaging_study.id for i in timeline.images if i.imaging_study is not None]
        reports = list(fhir.diagnostic_reports(patient_id))
        rules = LabelRules(options.site_tz, options.code_maps.outcomes)
        labels = read_labels(
            fhir.patient(patient_id), encounter, reports, studies, encounters, rules
        )
        if labels.mortality is None:
            return None
        return LabelledTimeline(timeline, labels)
    return None


def to_examples(
    items: Sequence[LabelledTimeline], prep: Preprocessing, config: DiproConfig, batch_size: int
) -> list[Example]:
    """Batch labelled timelines into ``(DiproBatch, DiproTargets)`` pairs."""
    examples: list[Example] = []
    for start in range(0, len(items), batch_size):
        group = items[start : start + batch_size]
        batch = collate(
            [g.timeline for g in group], prep, max_cxrs=config.max_cxrs, crop_size=config.crop_size
        )
        targets = DiproTargets(
            progression=torch.tensor([g.labels.progression for g in group], dtype=torch.int64),
            mortality=torch.tensor([g.labels.mortality for g in group], dtype=torch.float32),
            los=torch.tensor([g.labels.los_bin for g in group], dtype=torch.int64),
        )
        examples.append((batch, targets))
    return examples


def train_checkpoint(
    items: Sequence[LabelledTimeline],
    out_dir: Path,
    *,
    config: DiproConfig,
    name: str,
    version: str,
    training_data: str,
    epochs: int = 30,
    seed: int = 23,
    validation_share: float = 0.25,
) -> dict[str, float]:
    """Split, fit preprocessing on the training part, train, evaluate, save; return metrics.

    Raises:
        ValueError: Too few examples to split.
    """
    if len(items) < 8:
        raise ValueError(f"need at least 8 labelled patients to train, got {len(items)}")
    order = list(items)
    random.Random(seed).shuffle(order)
    n_val = max(2, int(len(order) * validation_share))
    train_items, val_items = order[n_val:], order[:n_val]
    prep = fit_preprocessing(i.timeline for i in train_items)
    seed_everything(seed)
    model = DiPro(config)
    train = to_examples(train_items, prep, config, config.batch_size)
    val = to_examples(val_items, prep, config, config.batch_size)
    balance = estimate_class_balance(t for _, t in train)
    result = fit(
        model,
        train,
        val,
        FitSettings(epochs=epochs, patience=max(3, epochs // 4), seed=seed),
        balance,
    )
    report = evaluate(model, val).to_dict()
    metrics = {
        f"{task}/{key}": float(value)
        for task, values in report.items()
        if values
        for key, value in values.items()
        if isinstance(value, int | float)
    }
    metrics["best_epoch"] = float(result.best_epoch)
    save_checkpoint(
        model,
        out_dir,
        name=name,
        version=version,
        training_data=f"{training_data}; {len(train_items)} train / {len(val_items)} validation",
        intended_use=INTENDED_USE,
        metrics=metrics,
        preprocessing=prep.to_json(),
    )
    logger.info("checkpoint %s %s saved (%d train examples)", name, version, len(train_items))
    return metrics
