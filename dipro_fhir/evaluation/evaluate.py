"""Evaluate a checkpoint on labelled patients, next to simple baselines on the same patients.

Patients are streamed (a chunk at a time: only their predictions are kept), extracted as of
the prediction point by the scoring pipeline's own extraction
(:mod:`dipro_fhir.evaluation.examples`), and scored by five models:

* ``dipro``: the checkpoint as scoring runs it (its preprocessing and calibration);
* ``ehr_only``: the same network with every film masked (the paper's EHR-only variant);
* ``last_pair``: the same network given only the two most recent films (DiPro reads pairs,
  so this is its closest form of the paper's "last CXR" setting);
* ``logistic``: the logistic regression on EHR summaries fitted beside the weights;
* ``prevalence``: the training split's label shares, the same for everyone.

The record (``evaluation.json``) holds every model's figures with bootstrap intervals
(:mod:`dipro_fhir.evaluation.figures`), the figures by subgroup, where the patients came
from (counts, prediction times, source; never patient ids), and notes that say in words what
these patients can and cannot show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from dipro.batch import DiproTargets
from dipro.predictions import Predictions, predict
from dipro_fhir.evaluation.baseline import EhrBaseline
from dipro_fhir.evaluation.examples import ExampleCounts, LabelledTimeline
from dipro_fhir.evaluation.figures import model_figures, subgroup_figures
from dipro_fhir.evaluation.groups import demographic_groups
from dipro_fhir.evaluation.notes import evaluation_notes
from dipro_fhir.evaluation.summaries import summarise
from dipro_fhir.scoring.preprocess import collate
from dipro_fhir.scoring.scorer import LoadedModel

logger = logging.getLogger(__name__)

EVALUATION_KIND: Final[str] = "dipro-fhir/evaluation/1"
MODELS: Final[dict[str, str]] = {
    "dipro": "DiPro (this checkpoint)",
    "ehr_only": "DiPro, every film masked (EHR only)",
    "last_pair": "DiPro, the two most recent films only",
    "logistic": "Logistic regression on EHR summaries",
    "prevalence": "Training prevalence (the same risk for everyone)",
}
#: Patients per scoring chunk.
CHUNK: Final[int] = 32


def targets_of(examples: Sequence[LabelledTimeline]) -> DiproTargets:
    """The labels of ``examples`` as network targets."""
    return DiproTargets(
        progression=torch.tensor([e.labels.progression for e in examples], dtype=torch.int64),
        mortality=torch.tensor([e.labels.mortality for e in examples], dtype=torch.float32),
        los=torch.tensor([e.labels.los_bin for e in examples], dtype=torch.int64),
    )


def attributes_of(example: LabelledTimeline) -> dict[str, str]:
    """The subgroups a patient belongs to (from the mapped demographics and the films)."""
    images = example.timeline.images
    lost = any(issue.code == "regions-qc-film" for issue in example.timeline.issues)
    return {
        **demographic_groups(example.timeline.demographics),
        "cxr_path": "cxr_pairs" if len(images) >= 2 else "ehr_only",
        "films_lost_to_qc": "yes" if lost else "no",
    }


@dataclass(slots=True)
class Collector:
    """Scores chunks of examples by every model and keeps only predictions and subgroups."""

    loaded: LoadedModel
    baseline: EhrBaseline | None
    parts: dict[str, list[Predictions]] = field(default_factory=dict)
    attributes: list[dict[str, str]] = field(default_factory=list)

    def add(self, examples: Sequence[LabelledTimeline]) -> None:
        """Score one chunk of examples."""
        if not examples:
            return
        targets = targets_of(examples)
        full = self._network([e.timeline for e in examples], targets)
        labels = full.progression_labels
        found = {
            "dipro": full,
            "ehr_only": self._network([replace(e.timeline, images=()) for e in examples], targets),
            "last_pair": self._network(
                [replace(e.timeline, images=e.timeline.images[-2:]) for e in examples], targets
            ),
        }
        if self.baseline is not None:
            features = np.stack([summarise(e.timeline) for e in examples])
            found["logistic"] = self.baseline.predict(features, full)
            found["prevalence"] = self.baseline.prevalence.predictions_like(full)
        for name, pred in found.items():
            # Every model is graded on the pairs the full model graded.
            self.parts.setdefault(name, []).append(replace(pred, progression_labels=labels))
        self.attributes += [attributes_of(e) for e in examples]

    def _network(self, timelines: list[Any], targets: DiproTargets) -> Predictions:
        config = self.loaded.network.config
        batch = collate(
            timelines,
            self.loaded.preprocessing,
            max_cxrs=config.max_cxrs,
            crop_size=config.crop_size,
        )
        return predict(self.loaded.network, [(batch, targets)], self.loaded.calibration)

    def predictions(self) -> dict[str, Predictions]:
        """Every model's predictions over all patients added, in the order added."""
        return {name: _concatenate(parts) for name, parts in self.parts.items()}

    def groups(self) -> dict[str, dict[str, npt.NDArray[np.int64]]]:
        """Attribute -> group -> patient rows."""
        out: dict[str, dict[str, list[int]]] = {}
        for row, attributes in enumerate(self.attributes):
            for name, group in attributes.items():
                out.setdefault(name, {}).setdefault(group, []).append(row)
        return {
            a: {g: np.asarray(r, dtype=np.int64) for g, r in gs.items()} for a, gs in out.items()
        }


def _concatenate(parts: Sequence[Predictions]) -> Predictions:
    def cat(name: str) -> Any:
        arrays = [getattr(p, name) for p in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    return Predictions(
        mortality=cat("mortality"),
        mortality_labels=cat("mortality_labels"),
        los=cat("los"),
        los_labels=cat("los_labels"),
        progression=cat("progression"),
        progression_labels=cat("progression_labels"),
    )


def collect(
    examples: Iterable[LabelledTimeline],
    loaded: LoadedModel,
    baseline: EhrBaseline | None,
    progress: Callable[[int], None] | None = None,
) -> Collector:
    """Score a stream of examples in chunks of :data:`CHUNK`."""
    collector = Collector(loaded, baseline)
    chunk: list[LabelledTimeline] = []
    for example in examples:
        chunk.append(example)
        if len(chunk) == CHUNK:
            collector.add(chunk)
            chunk = []
            if progress is not None:
                progress(len(collector.attributes))
    collector.add(chunk)
    return collector


def evaluation_record(
    collector: Collector,
    counts: ExampleCounts,
    *,
    source: dict[str, Any],
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The evaluation of a collected set of patients (``evaluation.json``'s content).

    Args:
        collector: The scored patients.
        counts: Patients read and skipped (with reasons).
        source: Where the patients came from (free-form, no patient ids).
        resamples: Bootstrap resamples (subgroups use a fifth of them).
        seed: Bootstrap seed.
    """
    card = collector.loaded.card
    predictions = collector.predictions()
    models = {name: model_figures(pred, resamples, seed) for name, pred in predictions.items()}
    subgroups = subgroup_figures(
        {n: p for n, p in predictions.items() if n in ("dipro", "logistic")},
        collector.groups(),
        max(resamples // 5, 1),
        seed,
    )
    dipro = predictions.get("dipro")
    record: dict[str, Any] = {
        "kind": EVALUATION_KIND,
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "checkpoint": {
            "name": card.name,
            "version": card.version,
            "weights_sha256": card.weights_sha256,
            "calibrated": bool(card.calibration),
            "intended_use": card.intended_use,
        },
        "patients": {**counts.to_json(), "source": source},
        "bootstrap": {"resamples": resamples, "level": 0.95, "unit": "patient", "seed": seed},
        "model_labels": {n: MODELS[n] for n in predictions},
        "models": models,
        "risk_histogram": _histogram(None if dipro is None else dipro.mortality),
        "subgroups": subgroups,
    }
    record["notes"] = evaluation_notes(record)
    return record


def _histogram(prob: npt.NDArray[np.float64] | None, bins: int = 20) -> list[int]:
    """Counts of mortality risks in ``bins`` equal bins over [0, 1]."""
    if prob is None:
        return []
    return [int(c) for c in np.histogram(prob, bins=bins, range=(0.0, 1.0))[0]]
