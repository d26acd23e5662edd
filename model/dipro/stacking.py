"""Stack the trained network with a regression on the window statistics (``dipro.summary``).

With ``config.summary_path`` the trainer trains the network without the summary path, then
(1) fits, per task, a linear model on the window statistics of the training split, its L2
penalty chosen on the validation split by log-likelihood as the logistic-regression baseline's
is, into the summary path; and (2) mixes the two per task (per finding for progression) as
``(1 - w) * network + w * regression`` by scaling the heads' last layers and the summary
path's rows:

* mortality and length of stay, outcomes of the EHR window the regression reads as well as
  the network does: equal parts, ``w = 0.5`` (:data:`EQUAL_PARTS`). A weight chosen on the
  validation split would lean on the network, because the same patients chose its epochs: on
  the 0.3.0 demo's validation split the network's mortality AUROC was 0.871 against the
  regression's 0.845, on three sets of unseen patients 0.900 / 0.837 / 0.878 against 0.896 /
  0.841 / 0.875; the chosen weight was 0.1, while on all three the even mixture beat both
  parts (docs/models.md). Equal weights are the usual robust choice for two forecasts of
  similar skill (Clemen, 1989; Claeskens et al., 2016).
* each progression finding, which the regression cannot see on the films: ``w`` in [0, 1]
  chosen on the validation split by log-likelihood (:data:`MIXES`); ``w = 0``, the network
  alone, is always a candidate.

A task or finding whose regression could not be fitted (too few labels) keeps the network
alone. Calibration is fitted afterwards, on the stacked logits. Stacking (Wolpert, 1992) with
a simple model.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Final

import torch
from torch import nn

from dipro.batch import DiproBatch, DiproTargets
from dipro.network import DiPro
from dipro.summary import SummaryPath, window_statistics
from dipro.vocab import PROGRESSION_IGNORE

#: L2 penalties tried (mean loss + penalty * |w|^2 on standardised inputs).
PENALTIES: Final[tuple[float, ...]] = (1e-4, 1e-3, 1e-2, 1e-1)
#: A task (or finding) with fewer labels than this, or one class only, keeps zero weights.
MIN_LABELS: Final[int] = 10
#: Tasks mixed in equal parts (module docstring) and the regression's weight there.
EQUAL_PARTS: Final[tuple[str, ...]] = ("mortality", "los")
EQUAL: Final[float] = 0.5

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


def fit_linear(x: torch.Tensor, y: torch.Tensor, outputs: int, penalty: float) -> torch.Tensor:
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


def choose_linear(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    outputs: int,
) -> tuple[torch.Tensor, float] | None:
    """:func:`fit_linear` for each of :data:`PENALTIES` on ``train``; the weights and penalty
    with the lowest validation log-loss (the middle penalty without validation labels; None:
    fewer than :data:`MIN_LABELS` training labels or one class)."""
    (xt, yt), (xv, yv) = train, val
    if yt.numel() < MIN_LABELS or int(torch.unique(yt).numel()) < 2:
        return None
    fits = [(fit_linear(xt, yt, outputs, p), p) for p in PENALTIES]
    if yv.numel() == 0:
        return fits[len(fits) // 2]

    def nll(w: torch.Tensor) -> float:
        return float(_loss(xv @ w[:-1] + w[-1], yv, outputs == 1))

    return min(fits, key=lambda fit: nll(fit[0]))


def fit_regression(
    path: SummaryPath,
    layout: dict[str, tuple[int, int]],
    train_data: Sequence[Example],
    val_data: Sequence[Example],
) -> dict[str, float]:
    """Fit ``path`` as per-task regressions (module docstring, step 1) and freeze it.

    Returns:
        The penalty chosen per task or finding (``progression:k``); absent: too few labels
        (that block stays zero).
    """
    x_train, t_train = _inputs(train_data)
    x_val, t_val = _inputs(val_data)
    mean, std = x_train.mean(dim=0), x_train.std(dim=0).clamp(min=1e-6)
    xt, xv = (x_train - mean) / std, (x_val - mean) / std
    blocks: list[torch.Tensor] = []
    chosen: dict[str, float] = {}
    for task, (tokens, width) in layout.items():
        for k in range(tokens):
            (yt, keep_t), (yv, keep_v) = _labels(task, k, t_train, t_val)
            fit = choose_linear((xt[keep_t], yt[keep_t]), (xv[keep_v], yv[keep_v]), width)
            if fit is None:
                blocks.append(torch.zeros((xt.shape[1] + 1, width), dtype=torch.float64))
            else:
                blocks.append(fit[0])
                chosen[task if task != "progression" else f"progression:{k}"] = fit[1]
    w = torch.cat(blocks, dim=1)  # [F + 1, outputs] on standardised inputs
    weight = w[:-1] / std[:, None]
    bias = w[-1] - (mean[:, None] * weight).sum(dim=0)
    with torch.no_grad():
        path.linear.weight.copy_(weight.T.float())
        path.linear.bias.copy_(bias.float())
    path.requires_grad_(False)
    return chosen


def stack(
    model: DiPro, path: SummaryPath, val_data: Sequence[Example], fitted: Collection[str]
) -> dict[str, float]:
    """Mix the trained ``model`` with the fitted ``path`` (module docstring, step 2).

    ``model`` must have no summary path attached (trained without it); it is moved to the CPU.
    ``fitted`` names the tasks and findings (``progression:k``) whose regression was fitted
    (:func:`fit_regression`'s keys); the others keep the network alone. The mixture is written
    into the weights: the heads' last layers are scaled by ``1 - w``, the path's rows by
    ``w``, and the path is attached as ``model.summary``.

    Returns:
        The weight of the regression chosen per task or finding (``progression:k``).
    """
    model.cpu().eval()  # the caller saves it from the CPU; 600 patients of logits
    path.eval()  # not yet part of ``model``: its dropout would blur the logits weighed here
    deep: dict[str, list[torch.Tensor]] = {t: [] for t in model.heads.layout}
    wide: list[torch.Tensor] = []
    targets: list[DiproTargets] = []
    used: list[torch.Tensor] = []
    with torch.no_grad():
        for batch, target in val_data:
            out = model(batch)
            for task in deep:
                deep[task].append(getattr(out, task).double().cpu())
            wide.append(path(batch.ehr_values, batch.ehr_mask, batch.ehr_row_mask,
                             batch.demographics).double().cpu())  # fmt: skip
            targets.append(target)
            used.append(out.used_pairs.cpu())
    flat = torch.cat(wide)
    t = DiproTargets(
        torch.cat([x.progression for x in targets]),
        torch.cat([x.mortality for x in targets]),
        torch.cat([x.los for x in targets]),
    )
    pairs = torch.cat(used)
    weights: dict[str, float] = {}
    row_scale = torch.zeros(flat.shape[1], dtype=torch.float32)
    start = 0
    for task, (tokens, width) in model.heads.layout.items():
        net = torch.cat(deep[task]).reshape(-1, tokens, width)
        reg = flat[:, start : start + tokens * width].reshape(-1, tokens, width)
        heads = list(model.heads.heads[task].children())
        for k in range(tokens):
            name = task if task != "progression" else f"progression:{k}"
            (y, keep), _ = _labels(task, k, t, t)
            if task == "progression":
                keep = keep & pairs
            if name not in fitted:
                w = 0.0
            elif task in EQUAL_PARTS:
                w = EQUAL
            else:
                w = _best_mix(net[keep, k], reg[keep, k], y[keep], width)
            weights[name] = w
            last = list(heads[k].children())[-1]
            assert isinstance(last, nn.Linear)
            with torch.no_grad():
                last.weight.mul_(1.0 - w)
                last.bias.mul_(1.0 - w)
            row_scale[start + k * width : start + (k + 1) * width] = w
        start += tokens * width
    with torch.no_grad():
        path.linear.weight.mul_(row_scale[:, None].to(path.linear.weight.dtype))
        path.linear.bias.mul_(row_scale.to(path.linear.bias.dtype))
    model.summary = path
    return weights


#: Weights of the regression tried by :func:`stack`.
MIXES: Final[tuple[float, ...]] = tuple(i / 10 for i in range(11))


def _best_mix(net: torch.Tensor, reg: torch.Tensor, y: torch.Tensor, width: int) -> float:
    """The weight of ``MIXES`` with the lowest log-loss (0 when too few labels)."""
    if y.numel() < MIN_LABELS or int(torch.unique(y).numel()) < 2:
        return 0.0
    losses = [float(_loss((1 - w) * net + w * reg, y, width == 1)) for w in MIXES]
    return MIXES[min(range(len(MIXES)), key=losses.__getitem__)]


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
