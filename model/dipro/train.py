"""A plain PyTorch trainer and evaluator for DiPro (reference §4).

AdamW on all parameters, cosine annealing per epoch, early stopping on the paper's per-task
validation metric (DP macro-F1, mortality AUPRC, LoS accuracy; §4.1), the best epoch's weights
restored at the end, seeds, and AMP (bf16, or fp16 with a grad scaler) on CUDA. Data are any
sequences of ``(DiproBatch, DiproTargets)`` pairs the caller built; batch order is shuffled
each epoch with a seeded generator.
"""

from __future__ import annotations

import copy
import dataclasses
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
from dipro.metrics import (
    ClassificationMetrics,
    binary_metrics,
    multiclass_metrics,
    progression_metrics,
)
from dipro.network import DiPro
from dipro.scoring import autocast_dtype, score, select_device

logger = logging.getLogger(__name__)

Example = tuple[DiproBatch, DiproTargets]

#: The paper's early-stopping metric per task (§4.1).
PAPER_MONITOR: dict[str, str] = {"progression": "macro_f1", "mortality": "auprc", "los": "accuracy"}


@dataclass(frozen=True, slots=True)
class FitSettings:
    """Training settings; None means "take it from the model's config" or "auto".

    Attributes:
        epochs: Maximum epochs (paper: 100).
        patience: Epochs without improvement before stopping (paper: 10).
        learning_rate: AdamW lr (default ``config.learning_rate``).
        weight_decay: AdamW weight decay (default ``config.weight_decay``).
        seed: Seed for initial state and batch order (paper: 23, 29, 66).
        device: ``"cpu"``, ``"cuda"`` ... (default: CUDA when present).
        mixed_precision: Autocast on CUDA.
        grad_accumulation: Micro-batches per optimiser step (paper: 4).
        monitor_task: Task whose validation metric stops training (default: first task).
        monitor_metric: Metric name (default: ``PAPER_MONITOR[monitor_task]``).
        cosine_epochs: T_max of the cosine schedule (paper: 100).
        min_learning_rate: eta_min of the cosine schedule (paper: 1e-7).
        metrics_path: Where to write the per-epoch history as JSON, or None.
    """

    epochs: int = 100
    patience: int = 10
    learning_rate: float | None = None
    weight_decay: float | None = None
    seed: int = 23
    device: str | None = None
    mixed_precision: bool = True
    grad_accumulation: int = 1
    monitor_task: str | None = None
    monitor_metric: str | None = None
    cosine_epochs: int = 100
    min_learning_rate: float = 1e-7
    metrics_path: Path | None = None


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """Metrics per configured task (None for tasks without a head)."""

    progression: ClassificationMetrics | None
    mortality: ClassificationMetrics | None
    los: ClassificationMetrics | None

    def to_dict(self) -> dict[str, dict[str, float] | None]:
        """JSON-ready form."""
        return {
            task: None if m is None else dataclasses.asdict(m)
            for task, m in (
                ("progression", self.progression),
                ("mortality", self.mortality),
                ("los", self.los),
            )
        }


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One epoch: mean training loss terms, validation metrics, the monitored value."""

    epoch: int
    train_losses: dict[str, float]
    validation: EvaluationReport
    monitored: float
    seconds: float


@dataclass(frozen=True, slots=True)
class FitResult:
    """Outcome of ``fit``; the model holds the best epoch's weights."""

    best_epoch: int
    best_value: float
    monitor: str
    history: tuple[EpochRecord, ...]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) for reproducible initialisation and dropout."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def evaluate(model: DiPro, data: Sequence[Example]) -> EvaluationReport:
    """Score ``data`` and compute each configured task's metrics (§4.2).

    Args:
        model: The network (on its device).
        data: Batches with targets.
    """
    prog_p, prog_y, mort_p, mort_y, los_p, los_y = [], [], [], [], [], []
    for batch, targets in data:
        result = score(model, batch)
        if result.progression is not None:
            labels = targets.progression.cpu().clone()
            labels[~result.used_pairs] = 3  # no pair: nothing to grade (§3.1)
            prog_p.append(result.progression.numpy())
            prog_y.append(labels.numpy())
        if result.mortality is not None:
            mort_p.append(result.mortality.numpy())
            mort_y.append(targets.mortality.cpu().numpy())
        if result.los is not None:
            known = targets.los.cpu() >= 0
            los_p.append(result.los[known].numpy())
            los_y.append(targets.los.cpu()[known].numpy())
    return EvaluationReport(
        progression=progression_metrics(np.concatenate(prog_y), np.concatenate(prog_p))
        if prog_p
        else None,
        mortality=binary_metrics(np.concatenate(mort_y), np.concatenate(mort_p).astype(np.float64))
        if mort_p
        else None,
        los=multiclass_metrics(np.concatenate(los_y), np.concatenate(los_p).astype(np.float64))
        if los_p
        else None,
    )


def write_metrics_json(report: EvaluationReport, path: Path) -> None:
    """Write an evaluation report as JSON (NaN written as null)."""
    data = json.loads(json.dumps(report.to_dict()).replace("NaN", "null"))
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _monitored(report: EvaluationReport, task: str, metric: str) -> float:
    metrics = getattr(report, task)
    value = float("nan") if metrics is None else float(getattr(metrics, metric))
    return -math.inf if math.isnan(value) else value


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


def fit(
    model: DiPro,
    train_data: Sequence[Example],
    val_data: Sequence[Example],
    settings: FitSettings | None = None,
    balance: ClassBalance | None = None,
) -> FitResult:
    """Train ``model`` in place with early stopping; restore the best epoch's weights.

    Args:
        model: A freshly built (or pre-trained) network.
        train_data: Training batches with targets.
        val_data: Validation batches with targets.
        settings: Training settings (defaults: ``FitSettings()``).
        balance: Class weights from ``losses.estimate_class_balance(train targets)``.

    Returns:
        The best epoch, its monitored value and the per-epoch history.
    """
    settings = settings or FitSettings()
    config = model.config
    task = settings.monitor_task or config.tasks[0]
    metric = settings.monitor_metric or PAPER_MONITOR[task]
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
        optimizer, T_max=settings.cosine_epochs, eta_min=settings.min_learning_rate
    )
    generator = torch.Generator().manual_seed(settings.seed)
    best_value, best_epoch, best_state = -math.inf, -1, copy.deepcopy(model.state_dict())
    history: list[EpochRecord] = []
    for epoch in range(settings.epochs):
        started = time.perf_counter()
        losses = _train_epoch(model, train_data, optimizer, settings, balance, generator)
        schedule.step()
        report = evaluate(model, val_data)
        value = _monitored(report, task, metric)
        history.append(EpochRecord(epoch, losses, report, value, time.perf_counter() - started))
        logger.info(
            "epoch %d loss %.4f val %s/%s %.4f", epoch, losses["total"], task, metric, value
        )
        if value > best_value:
            best_value, best_epoch = value, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    model.load_state_dict(best_state)
    result = FitResult(best_epoch, best_value, f"{task}/{metric}", tuple(history))
    if settings.metrics_path is not None:
        _write_history(result, settings.metrics_path)
    return result


def _write_history(result: FitResult, path: Path) -> None:
    records = [
        {
            "epoch": r.epoch,
            "train_losses": r.train_losses,
            "validation": r.validation.to_dict(),
            "monitored": r.monitored,
            "seconds": r.seconds,
        }
        for r in result.history
    ]
    data = {
        "best_epoch": result.best_epoch,
        "best_value": result.best_value,
        "monitor": result.monitor,
        "history": records,
    }
    path.write_text(json.dumps(data, indent=2).replace("NaN", "null") + "\n", encoding="utf-8")
