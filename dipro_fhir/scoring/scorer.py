"""Score mapped timelines with a DiPro checkpoint and turn probabilities into :class:`Score`.

The checkpoint is loaded once per process (an Airflow task is one process, so once per chunk)
with memory-mapped weights; batches go to CUDA when present, else the CPU. The backbone runs
first, only on CXRs whose features are not cached, in batches across patients
(:mod:`dipro_fhir.scoring.features`); the rest of the network then scores from features.
A patient with fewer than two CXRs is scored by the EHR-only path (every pair masked,
reference §7.2); its mortality and length-of-stay scores say so (``path="ehr_only"``) and
it gets no progression scores, because progression is defined for the most recent
consecutive CXR pair.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dipro.calibration import Calibration
from dipro.checkpoint import CheckpointMismatch, ModelCard, load_checkpoint, state_digest
from dipro.network import DiPro
from dipro.scoring import ScoreResult, prepare_for_inference, score, select_device
from dipro.vocab import FINDINGS, LOS_BINS, PROGRESSION_CLASSES, REGIONS
from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.core.scores import MORTALITY_OUTCOME, ModelInfo, Score
from dipro_fhir.core.timeline import PatientTimeline, ResourceRef, RunId
from dipro_fhir.mapping.quality import IMAGE_UNUSABLE
from dipro_fhir.scoring.features import FeatureStats, region_features, stack_features
from dipro_fhir.scoring.preprocess import Preprocessing, collate
from dipro_fhir.store.feature_cache import FeatureCache

logger = logging.getLogger(__name__)

#: Probabilities are rounded to 4 decimals: more is noise, and last-digit differences of
#: float arithmetic between processes or thread counts must not make a re-run of the same
#: night look like new content (write-back skips identical RiskAssessments).
PROBABILITY_DECIMALS = 4


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A checkpoint ready to score: the network on its device, its card, preprocessing and
    calibration (applied to every probability it scores)."""

    network: DiPro
    card: ModelCard
    preprocessing: Preprocessing
    info: ModelInfo
    load_seconds: float
    backbone_digest: str = ""
    calibration: Calibration | None = None


def load_model(checkpoint: Path, device: str = "auto") -> LoadedModel:
    """Load a checkpoint for scoring.

    Args:
        checkpoint: The checkpoint folder (``weights.pt`` + ``model_card.json``).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.

    Raises:
        ModelContractError: The checkpoint is missing, or does not match this code.
    """
    started = time.perf_counter()
    target = select_device() if device == "auto" else torch.device(device)
    if not checkpoint.is_dir():
        raise ModelContractError(f"no checkpoint folder at {checkpoint}")
    try:
        network, card = load_checkpoint(checkpoint, map_location=target)
    except CheckpointMismatch as exc:
        raise ModelContractError(f"checkpoint {checkpoint} refused: {exc}") from exc
    prep = Preprocessing.from_json(card.preprocessing)
    try:
        calibration = Calibration.from_json(card.calibration)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelContractError(f"checkpoint {checkpoint}: calibration unreadable: {exc}") from exc
    digest = state_digest(network.backbone_state())
    prepare_for_inference(network)
    seconds = time.perf_counter() - started
    logger.info("model %s %s loaded on %s in %.2fs", card.name, card.version, target, seconds)
    info = ModelInfo(card.name, card.version, card.weights_sha256, card.to_json())
    return LoadedModel(network, card, prep, info, seconds, digest, calibration)


def _batches(
    timelines: Sequence[PatientTimeline], size: int
) -> Iterator[Sequence[PatientTimeline]]:
    for start in range(0, len(timelines), size):
        yield timelines[start : start + size]


def score_timelines(
    model: LoadedModel,
    timelines: Sequence[PatientTimeline],
    *,
    run_id: RunId,
    batch_size: int = 16,
    cache: FeatureCache | None = None,
    stats: FeatureStats | None = None,
) -> list[Score]:
    """Score timelines in batches; one :class:`Score` per patient, task and outcome.

    Args:
        model: The loaded checkpoint.
        timelines: A chunk's timelines (CXRs with crops, or with cached features).
        run_id: The run.
        batch_size: Patients per network batch.
        cache: The shared feature cache that computed features are written to.
        stats: Adds up backbone work (CXRs cached and computed), when given.

    Raises:
        ModelContractError: The timelines do not fit the model.
    """
    config = model.network.config
    features = region_features(
        model.network,
        timelines,
        max_cxrs=config.max_cxrs,
        crop_size=config.crop_size,
        weights_digest=model.backbone_digest,
        cache=cache,
        stats=stats,
    )
    scores: list[Score] = []
    for group in _batches(timelines, batch_size):
        batch = collate(
            group,
            model.preprocessing,
            max_cxrs=config.max_cxrs,
            crop_size=config.crop_size,
            with_crops=False,
        )
        stacked = stack_features(group, features, config.max_cxrs)
        result = score(model.network, batch, region_features=stacked, calibration=model.calibration)
        for i, tl in enumerate(group):
            scores.extend(_scores_of(model.info, tl, result, i, run_id))
    return scores


#: The reason a patient gets no score at all: nothing in its window the model could use.
NO_USABLE_DATA = "no-usable-data"


def has_usable_data(tl: PatientTimeline) -> bool:
    """Whether the model has anything of this patient to score from: a mapped EHR value in
    the observation window, or a radiograph with at least one placed region. Demographics
    alone are no basis for a risk (a score is a claim about *this* stay)."""
    return bool(tl.ehr_mask.any()) or any(bool(img.region_mask.any()) for img in tl.images)


def region_problems(tl: PatientTimeline) -> tuple[tuple[str, ...], int]:
    """Regions missing on any of the patient's radiographs and the number of radiographs
    left out by region quality control (``regions-qc-film`` issues)."""
    missing = {REGIONS[r] for img in tl.images for r in np.flatnonzero(~img.region_mask)}
    not_used = sum(1 for issue in tl.issues if issue.code == "regions-qc-film")
    return tuple(r for r in REGIONS if r in missing), not_used


def films_left_out(tl: PatientTimeline) -> tuple[str, ...]:
    """The films and studies of the window not used, as ``<resource> (<reason>)``, in the
    order met; a film dated after the as-of time is not counted (it is not in the window)."""
    found = [
        f"{issue.resource} ({issue.code})"
        for issue in tl.issues
        if issue.code in IMAGE_UNUSABLE and issue.code != "after-as-of"
    ]
    return tuple(dict.fromkeys(found))


def films_from_thorax(tl: PatientTimeline) -> tuple[str, ...]:
    """The films used whose regions were placed from the thorax outline (white lungs:
    ``regions-from-thorax`` issues), in the order met."""
    found = [i.resource for i in tl.issues if i.code == "regions-from-thorax" and i.resource]
    return tuple(dict.fromkeys(found))


def _basis(tl: PatientTimeline) -> tuple[ResourceRef, ...]:
    studies = {img.imaging_study for img in tl.images if img.imaging_study is not None}
    return tuple(sorted(studies, key=lambda r: r.id)) + tuple(
        r for r in tl.provenance if r.resource_type == "Observation"
    )


def _scores_of(
    info: ModelInfo, tl: PatientTimeline, result: ScoreResult, i: int, run_id: RunId
) -> Iterator[Score]:
    used_pairs = bool(result.used_pairs[i])
    path = "pairs" if used_pairs else "ehr_only"
    basis = _basis(tl)
    missing, not_used = region_problems(tl)
    left_out = films_left_out(tl)
    from_thorax = films_from_thorax(tl)

    def make(task: str, outcome: str, p: float) -> Score:
        return Score(
            patient_id=tl.patient_id,
            encounter_id=tl.encounter_id,
            task=task,
            outcome=outcome,
            probability=round(min(max(p, 0.0), 1.0), PROBABILITY_DECIMALS),
            model_name=info.name,
            model_version=info.version,
            as_of=tl.as_of,
            run_id=run_id,
            basis=basis,
            path=path,
            missing_regions=missing,
            images_not_used=not_used,
            films_left_out=left_out,
            films_from_thorax=from_thorax,
        )

    if result.mortality is not None:
        yield make("mortality", MORTALITY_OUTCOME, float(result.mortality[i]))
    if result.los is not None:
        for k, name in enumerate(LOS_BINS):
            yield make("los", name, float(result.los[i, k]))
    if result.progression is not None and used_pairs:
        for f, finding in enumerate(FINDINGS):
            for c, cls in enumerate(PROGRESSION_CLASSES):
                yield make("progression", f"{finding}:{cls}", float(result.progression[i, f, c]))
