"""A plain PyTorch trainer and evaluator for DiPro (reference §4), that learns or says why not.

AdamW on all parameters, a cosine schedule over the epochs it is given, seeds, and AMP (bf16,
or fp16 with a grad scaler) on CUDA. Data are any sequences of ``(DiproBatch, DiproTargets)``
pairs the caller built (lists, or batches read from disk); batch order is shuffled each epoch
with a seeded generator.

The epoch is chosen on a stable criterion over every task with labels: the mean over tasks of
the validation loss relative to the training prevalence (:func:`dipro.predictions.
loss_ratios`), not the paper's per-task F1 or AUPRC (§4.1), which on a few dozen validation
patients is noise and once selected the near-constant first epoch. Training runs at least
``min_epochs`` before patience can stop it. :class:`TrainingFailed` is raised, and the caller
saves nothing, when a configured task has no training labels, no task can be validated, no
epoch beats the untrained network, or a task at the chosen epoch is no better than its
prevalence.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dipro.batch import DiproBatch, DiproTargets
from dipro.losses import ClassBalance, compute_losses
from dipro.network import DiPro
from dipro.predictions import (
    Predictions,
    Prevalence,
    labelled_tasks,
    loss_ratios,
    predict,
)
from dipro.report import EvaluationReport, report_of
from dipro.scoring import autocast_dtype, select_device

logger = logging.getLogger(__name__)

Example = tuple[DiproBatch, DiproTargets]


class TrainingFailed(ValueError):
    """The network did not learn, or could not be validated: nothing may be saved."""


@dataclass(frozen=True, slots=True)
class FitSettings:
    """Training settings; None means "take it from the model's config" or "auto".

    Attributes:
        epochs: Maximum epochs (paper: 100); the cosine schedule spans exactly these.
        min_epochs: Epochs always run before patience may stop training.
        patience: Epochs without a better criterion before stopping (paper: 10).
        learning_rate: AdamW lr (default ``config.learning_rate``).
        weight_decay: AdamW weight decay (default ``config.weight_decay``).
        seed: Seed for initial state and batch order (paper: 23, 29, 66).
        device: ``"cpu"``, ``"cuda"`` ... (default: CUDA when present).
        mixed_precision: Autocast on CUDA.
        grad_accumulation: Micro-batches per optimiser step (paper: 4).
        min_learning_rate: eta_min of the cosine schedule (paper: 1e-7).
        average_best: Average the weights of this many best epochs (by the criterion) and
            keep the average when its criterion beats the best single epoch's (weight
            averaging smooths the noise of one epoch, Izmailov et al. 2018); 1: off.
        metrics_path: Where to write the per-epoch history as JSON, or None.
    """

    epochs: int = 100
    min_epochs: int = 5
    patience: int = 10
    learning_rate: float | None = None
    weight_decay: float | None = None
    seed: int = 23
    device: str | None = None
    mixed_precision: bool = True
    grad_accumulation: int = 1
    min_learning_rate: float = 1e-7
    average_best: int = 1
    metrics_path: Path | None = None


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One epoch: mean training loss terms, validation metrics and loss ratios, criterion."""

    epoch: int
    train_losses: dict[str, float]
    validation: EvaluationReport
    loss_ratios: dict[str, float]
    criterion: float
    seconds: float


@dataclass(frozen=True, slots=True)
class FitResult:
    """Outcome of ``fit``; the model holds the best epoch's weights.

    Attributes:
        best_epoch: The chosen epoch (0-based).
        criterion: Its mean validation loss ratio (lower is better; 1 = the prevalence).
        initial_criterion: The untrained network's.
        tasks: The tasks the criterion covers (those with validation labels).
        prevalence: The training split's label shares (the constant predictor).
        history: Every epoch run.
        ratios: The returned model's validation loss over prevalence per task.
        averaged: The epochs whose weights were averaged into the model (empty: the model
            holds the best epoch's own weights).
    """

    best_epoch: int
    criterion: float
    initial_criterion: float
    tasks: tuple[str, ...]
    prevalence: Prevalence
    history: tuple[EpochRecord, ...]
    ratios: dict[str, float]
    averaged: tuple[int, ...] = ()


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) for reproducible initialisation and dropout."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _train_epoch(
    model: DiPro,
    data: Sequence[Example],
    optimizer: torch.optim.Optimizer,
    settings: FitSettings,
    balance: ClassBalance | None,
    generator: torch.Generator,
) -> dict[str, float]:
    device = next(model.parameters()).device
    dtype = autocast_dtype(device) if settings.mixed_precision else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    model.train()
    totals: dict[str, float] = {}
    order = torch.randperm(len(data), generator=generator).tolist()
    optimizer.zero_grad(set_to_none=True)
    for step, index in enumerate(order, start=1):
        batch, targets = data[index]
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(batch.to(device), with_reversed=True)
        terms = compute_losses(out, targets.to(device), model.config, model.pae_heads, balance)
        loss: torch.Tensor = scaler.scale(terms.total / settings.grad_accumulation)
        loss.backward()  # type: ignore[no-untyped-call]
        if step % settings.grad_accumulation == 0 or step == len(order):
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        for name, value in terms.as_floats().items():
            totals[name] = totals.get(name, 0.0) + value / len(order)
    return totals


def _criterion(ratios: dict[str, float]) -> float:
    values = [v for v in ratios.values() if math.isfinite(v)]
    return float(np.mean(values)) if values else math.inf


def _check_labels(model: DiPro, train_prev: Prevalence, val_prev: Prevalence) -> tuple[str, ...]:
    """The tasks the criterion covers; raise when a head has no training labels or no task
    has validation labels."""
    trained = labelled_tasks(train_prev)
    missing = [t for t in model.config.tasks if t not in trained]
    if missing:
        raise TrainingFailed(
            f"no training labels for {', '.join(missing)}: leave "
            f"{'it' if len(missing) == 1 else 'them'} out of the network's tasks"
        )
    tasks = tuple(t for t in model.config.tasks if t in labelled_tasks(val_prev))
    if not tasks:
        raise TrainingFailed("no task has labels in the validation split: nothing to validate")
    return tasks


def fit(
    model: DiPro,
    train_data: Sequence[Example],
    val_data: Sequence[Example],
    settings: FitSettings | None = None,
    balance: ClassBalance | None = None,
) -> FitResult:
    """Train ``model`` in place and restore the best epoch's weights (module docstring).

    Args:
        model: A freshly built (or pre-trained) network.
        train_data: Training batches with targets.
        val_data: Validation batches with targets.
        settings: Training settings (defaults: ``FitSettings()``).
        balance: Class weights of the losses (``losses.estimate_class_balance``), or None
            for unweighted losses, whose probabilities are not shifted by the weighting.

    Returns:
        The best epoch, its criterion and the per-epoch history.

    Raises:
        TrainingFailed: The network did not learn or could not be validated; the model's
            weights are then undefined and must not be saved.
    """
    settings = settings or FitSettings()
    config = model.config
    prevalence = Prevalence.from_targets(t for _, t in train_data)
    tasks = _check_labels(model, prevalence, Prevalence.from_targets(t for _, t in val_data))
    seed_everything(settings.seed)
    device = torch.device(settings.device) if settings.device else select_device()
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=settings.learning_rate or config.learning_rate,
        weight_decay=config.weight_decay
        if settings.weight_decay is None
        else settings.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(settings.epochs, 1), eta_min=settings.min_learning_rate
    )
    generator = torch.Generator().manual_seed(settings.seed)
    initial = _criterion(_ratios(model, val_data, prevalence, tasks))
    best_value, best_epoch, best_state = math.inf, -1, copy.deepcopy(model.state_dict())
    kept: list[tuple[float, int, dict[str, torch.Tensor]]] = []  # the best epochs' weights
    history: list[EpochRecord] = []
    for epoch in range(settings.epochs):
        started = time.perf_counter()
        losses = _train_epoch(model, train_data, optimizer, settings, balance, generator)
        schedule.step()
        pred = predict(model, val_data)
        ratios = _ratios_of(pred, prevalence, tasks)
        value = _criterion(ratios)
        history.append(
            EpochRecord(
                epoch, losses, report_of(pred), ratios, value, time.perf_counter() - started
            )
        )
        logger.info(
            "epoch %d loss %.4f validation loss / prevalence %.4f (%s)",
            epoch,
            losses["total"],
            value,
            ", ".join(f"{t} {r:.3f}" for t, r in ratios.items()),
        )
        if settings.average_best > 1:
            kept.append((value, epoch, copy.deepcopy(model.state_dict())))
            kept = sorted(kept, key=lambda k: k[0])[: settings.average_best]
        if value < best_value:
            best_value, best_epoch = value, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch + 1 >= settings.min_epochs and epoch - best_epoch >= settings.patience:
            break
    model.load_state_dict(best_state)
    averaged: tuple[int, ...] = ()
    ratios = history[best_epoch].loss_ratios if history else {}
    if len(kept) > 1:
        model.load_state_dict(_average([state for _, _, state in kept]))
        mean_ratios = _ratios(model, val_data, prevalence, tasks)
        if _criterion(mean_ratios) < best_value:
            best_value, ratios = _criterion(mean_ratios), mean_ratios
            averaged = tuple(sorted(e for _, e, _ in kept))
            logger.info("weights of epochs %s averaged: criterion %.4f", averaged, best_value)
        else:
            model.load_state_dict(best_state)
    result = FitResult(
        best_epoch, best_value, initial, tasks, prevalence, tuple(history), ratios, averaged
    )
    if settings.metrics_path is not None:
        _write_history(result, settings.metrics_path)
    _check_learned(result)
    return result


def _average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts (integer buffers taken from the first)."""
    out = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            out[name] = torch.stack([s[name] for s in states]).mean(dim=0)
        else:
            out[name] = first.clone()
    return out


def _ratios(
    model: DiPro, data: Sequence[Example], prevalence: Prevalence, tasks: tuple[str, ...]
) -> dict[str, float]:
    return _ratios_of(predict(model, data), prevalence, tasks)


def _ratios_of(
    pred: Predictions, prevalence: Prevalence, tasks: tuple[str, ...]
) -> dict[str, float]:
    return {t: r for t, r in loss_ratios(pred, prevalence).items() if t in tasks}


def _check_learned(result: FitResult) -> None:
    """Raise :class:`TrainingFailed` unless the chosen epoch beats the untrained network and
    every task beats its prevalence."""
    if result.best_epoch < 0 or not result.criterion < result.initial_criterion:
        raise TrainingFailed(
            f"no epoch beat the untrained network on validation loss "
            f"(best {result.criterion:.4f}, untrained {result.initial_criterion:.4f})"
        )
    weak = {t: r for t, r in result.ratios.items() if not r < 1.0}
    if weak:
        named = ", ".join(f"{t} {r:.3f}" for t, r in weak.items())
        raise TrainingFailed(
            f"at the chosen epoch {result.best_epoch}, validation loss over prevalence is "
            f"{named} (>= 1: no better than predicting the training prevalence); leave the "
            "task out or train on more patients"
        )


def _write_history(result: FitResult, path: Path) -> None:
    records = [
        {
            "epoch": r.epoch,
            "train_losses": r.train_losses,
            "validation": r.validation.to_dict(),
            "loss_ratios": r.loss_ratios,
            "criterion": r.criterion,
            "seconds": r.seconds,
        }
        for r in result.history
    ]
    data = {
        "best_epoch": result.best_epoch,
        "averaged_epochs": list(result.averaged),
        "criterion": result.criterion,
        "initial_criterion": result.initial_criterion,
        "tasks": list(result.tasks),
        "prevalence": result.prevalence.to_json(),
        "history": records,
    }
    text = json.dumps(data, indent=2).replace("NaN", "null").replace("Infinity", "null")
    path.write_text(text + "\n", encoding="utf-8")
