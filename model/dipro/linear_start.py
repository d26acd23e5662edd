"""Start the summary path at a fitted logistic regression, and let the network learn the rest.

With ``config.summary_path`` the trainer first fits, per task, a linear model on the window
statistics of the training split (``dipro.summary``), its L2 penalty chosen on the validation
split by log-likelihood, as the logistic-regression baseline is fitted. The fit is written into
the summary path, which is then frozen, and the last layer of every head is zeroed: the network
starts as exactly that regression and training learns what the sequence, the films and their
interactions add to it (residual learning on a linear model). Selecting the epoch against the
starting network then means beating the regression on validation patients, or failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import torch
from torch import nn

from dipro.batch import DiproBatch, DiproTargets
from dipro.network import DiPro
from dipro.summary import window_statistics
from dipro.vocab import PROGRESSION_IGNORE

#: L2 penalties tried (mean loss + penalty * |w|^2 on standardised inputs).
PENALTIES: Final[tuple[float, ...]] = (1e-4, 1e-3, 1e-2, 1e-1)
#: A task (or finding) with fewer labels than this, or one class only, keeps zero weights.
MIN_LABELS: Final[int] = 10

Example = tuple[DiproBatch, DiproTargets]


def _inputs(data: Iterable[Example]) -> tuple[torch.Tensor, DiproTargets]:
    xs, progression, mortality, los = [], [], [], []
    for batch, targets in data:
        stats = window_statistics(batch.ehr_values, batch.ehr_mask, batch.ehr_row_mask)
        xs.append(torch.cat([stats, batch.demographics], dim=1).double())
        progression.append(targets.progression)
        mortality.append(targets.mortality)
        los.append(targets.los)
    return torch.cat(xs), DiproTargets(torch.cat(progression), torch.cat(mortality), torch.cat(los))


def _loss(z: torch.Tensor, y: torch.Tensor, binary: bool) -> torch.Tensor:
    if binary:
        return nn.functional.binary_cross_entropy_with_logits(z[:, 0], y.double())
    return nn.functional.cross_entropy(z, y)


def _fit(x: torch.Tensor, y: torch.Tensor, outputs: int, penalty: float) -> torch.Tensor:
    """Weights ``[F + 1, outputs]`` (the last row the bias) minimising loss + L2 by L-BFGS."""
    w = torch.zeros((x.shape[1] + 1, outputs), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w], lr=1.0, max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = _loss(x @ w[:-1] + w[-1], y, outputs == 1) + penalty * (w[:-1] ** 2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    return w.detach()


def _choose(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    outputs: int,
) -> tuple[torch.Tensor, float] | None:
    (xt, yt), (xv, yv) = train, val
    if yt.numel() < MIN_LABELS or int(torch.unique(yt).numel()) < 2:
        return None
    fits = [(_fit(xt, yt, outputs, p), p) for p in PENALTIES]
    if yv.numel() == 0:
        return fits[len(fits) // 2]

    def nll(w: torch.Tensor) -> float:
        return float(_loss(xv @ w[:-1] + w[-1], yv, outputs == 1))

    return min(fits, key=lambda fit: nll(fit[0]))


def start_from_linear(
    model: DiPro, train_data: Sequence[Example], val_data: Sequence[Example]
) -> dict[str, float]:
    """Fit the summary path as a regression, freeze it, and zero the heads' last layers.

    Args:
        model: A fresh network with ``config.summary_path``.
        train_data: The training batches (the regression's fit).
        val_data: The validation batches (the choice of its penalty).

    Returns:
        The penalty chosen per task or finding (``progression:k``); absent: too few labels.
    """
    if model.summary is None:
        raise ValueError("start_from_linear needs a network with summary_path")
    x_train, t_train = _inputs(train_data)
    x_val, t_val = _inputs(val_data)
    mean, std = x_train.mean(dim=0), x_train.std(dim=0).clamp(min=1e-6)
    xt, xv = (x_train - mean) / std, (x_val - mean) / std
    blocks: list[torch.Tensor] = []
    chosen: dict[str, float] = {}
    for task, (tokens, width) in model.heads.layout.items():
        outputs = 1 if width == 1 else width
        for k in range(tokens):
            name, (yt, yv) = task, _labels(task, k, t_train, t_val)
            if task == "progression":
                name = f"progression:{k}"
            keep_t, keep_v = yt[1], yv[1]
            fit = _choose((xt[keep_t], yt[0][keep_t]), (xv[keep_v], yv[0][keep_v]), outputs)
            if fit is None:
                blocks.append(torch.zeros((xt.shape[1] + 1, outputs), dtype=torch.float64))
            else:
                blocks.append(fit[0])
                chosen[name] = fit[1]
    w = torch.cat(blocks, dim=1)  # [F + 1, outputs], standardised inputs
    weight = w[:-1] / std[:, None]
    bias = w[-1] - (mean[:, None] * weight).sum(dim=0)
    with torch.no_grad():
        model.summary.linear.weight.copy_(weight.T.float())
        model.summary.linear.bias.copy_(bias.float())
        for module in model.heads.heads.values():
            for head in module.children():
                last = list(head.children())[-1]
                assert isinstance(last, nn.Linear)
                last.weight.zero_()
                last.bias.zero_()
    model.summary.requires_grad_(False)
    return chosen


def _labels(
    task: str, k: int, train: DiproTargets, val: DiproTargets
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(labels, rows with a label) of the training and the validation split."""

    def of(t: DiproTargets) -> tuple[torch.Tensor, torch.Tensor]:
        if task == "mortality":
            return t.mortality.long(), torch.ones_like(t.los, dtype=torch.bool)
        if task == "los":
            return t.los, t.los >= 0
        return t.progression[:, k], t.progression[:, k] != PROGRESSION_IGNORE

    return of(train), of(val)
