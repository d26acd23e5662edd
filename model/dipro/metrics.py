"""Evaluation metrics implemented with numpy (reference §4.2); scikit-learn is not a dependency.

- DP: per finding, after dropping label 3: macro precision/recall/F1 from argmax, one-vs-rest
  macro AUROC, macro AUPRC by the trapezoid rule on the PR curve (the paper's ``auc`` of
  ``precision_recall_curve``, not average precision), accuracy; then the unweighted mean over
  findings.
- Mortality: AUROC and AUPRC as average precision (``average_precision_score``).
- LoS: accuracy, unweighted Cohen's kappa, macro F1, OvR macro AUROC.
- Calibration (not in the paper; a risk written into a RiskAssessment is read as a
  probability): Brier score, expected calibration error over equal-width bins and the
  reliability diagram's bins; percentile bootstrap intervals over patients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _curve_points(y_true: IntArray, score: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Cumulative TP and FP counts at each distinct threshold, high to low."""
    order = np.argsort(-score, kind="mergesort")
    y, s = y_true[order].astype(np.float64), score[order]
    last_of_run = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]
    tps = np.cumsum(y)[last_of_run]
    fps = (last_of_run + 1) - tps
    return tps, fps


def roc_auc(y_true: IntArray, score: FloatArray) -> float:
    """Binary AUROC (ties count half); NaN when only one class is present."""
    pos = int(y_true.sum())
    neg = y_true.size - pos
    if pos == 0 or neg == 0:
        return float("nan")
    tps, fps = _curve_points(y_true, score)
    tpr = np.r_[0.0, tps / pos]
    fpr = np.r_[0.0, fps / neg]
    return float(np.trapezoid(tpr, fpr))


def average_precision(y_true: IntArray, score: FloatArray) -> float:
    """AP = Σ (R_n - R_n-1) P_n (sklearn's ``average_precision_score``); NaN without positives."""
    pos = int(y_true.sum())
    if pos == 0:
        return float("nan")
    tps, fps = _curve_points(y_true, score)
    precision = tps / (tps + fps)
    recall = tps / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def pr_auc_trapezoid(y_true: IntArray, score: FloatArray) -> float:
    """Trapezoid area under the PR curve with sklearn's (recall 0, precision 1) end point."""
    pos = int(y_true.sum())
    if pos == 0:
        return float("nan")
    tps, fps = _curve_points(y_true, score)
    precision = np.r_[1.0, tps / (tps + fps)]
    recall = np.r_[0.0, tps / pos]
    return float(np.trapezoid(precision, recall))


def confusion(y_true: IntArray, y_pred: IntArray, classes: int) -> IntArray:
    """Confusion matrix [true, pred]."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def macro_f1(y_true: IntArray, y_pred: IntArray, classes: int) -> float:
    """Unweighted mean F1 over classes (a class with no support and no prediction scores 0)."""
    m = confusion(y_true, y_pred, classes).astype(np.float64)
    tp = np.diag(m)
    denom = m.sum(axis=0) + m.sum(axis=1)
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-12), 0.0)
    return float(f1.mean())


def cohen_kappa(y_true: IntArray, y_pred: IntArray, classes: int) -> float:
    """Unweighted Cohen's kappa."""
    m = confusion(y_true, y_pred, classes).astype(np.float64)
    n = m.sum()
    observed = np.trace(m) / n
    expected = float((m.sum(axis=0) * m.sum(axis=1)).sum()) / (n * n)
    return float((observed - expected) / (1 - expected)) if expected < 1 else 0.0


def ovr_macro(y_true: IntArray, prob: FloatArray, area: str) -> float:
    """One-vs-rest macro AUROC (``area="roc"``) or trapezoid AUPRC (``"pr"``), skipping NaN."""
    fn = roc_auc if area == "roc" else pr_auc_trapezoid
    values = [fn((y_true == c).astype(np.int64), prob[:, c]) for c in range(prob.shape[1])]
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


@dataclass(frozen=True, slots=True)
class ClassificationMetrics:
    """Metrics of one task (for DP, the mean over findings). NaN where undefined."""

    auroc: float
    auprc: float
    macro_f1: float
    accuracy: float
    kappa: float
    count: int


def multiclass_metrics(y_true: IntArray, prob: FloatArray) -> ClassificationMetrics:
    """Metrics of a multi-class task from labels [M] and probabilities [M, C]."""
    classes = prob.shape[1]
    if y_true.size == 0:
        nan = float("nan")
        return ClassificationMetrics(nan, nan, nan, nan, nan, 0)
    pred = prob.argmax(axis=1)
    return ClassificationMetrics(
        auroc=ovr_macro(y_true, prob, "roc"),
        auprc=ovr_macro(y_true, prob, "pr"),
        macro_f1=macro_f1(y_true, pred, classes),
        accuracy=float((pred == y_true).mean()),
        kappa=cohen_kappa(y_true, pred, classes),
        count=int(y_true.size),
    )


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def progression_metrics(labels: IntArray, prob: FloatArray) -> ClassificationMetrics:
    """DP metrics: labels [M, K] (3 = ignore), probabilities [M, K, 3]; mean over findings."""
    per_finding = []
    for k in range(labels.shape[1]):
        keep = labels[:, k] != 3
        if keep.any():
            per_finding.append(multiclass_metrics(labels[keep, k], prob[keep, k]))
    if not per_finding:
        return multiclass_metrics(np.zeros(0, np.int64), np.zeros((0, 3)))
    fields = ("auroc", "auprc", "macro_f1", "accuracy", "kappa")
    means = {f: _nanmean([getattr(m, f) for m in per_finding]) for f in fields}
    return ClassificationMetrics(**means, count=int((labels != 3).sum()))


def binary_metrics(labels: FloatArray, prob: FloatArray) -> ClassificationMetrics:
    """Mortality metrics: AUROC, AUPRC (average precision), F1 of the positive-class at 0.5."""
    y = labels.astype(np.int64)
    pred = (prob >= 0.5).astype(np.int64)
    return ClassificationMetrics(
        auroc=roc_auc(y, prob),
        auprc=average_precision(y, prob),
        macro_f1=macro_f1(y, pred, 2),
        accuracy=float((pred == y).mean()) if y.size else float("nan"),
        kappa=cohen_kappa(y, pred, 2) if y.size else float("nan"),
        count=int(y.size),
    )


def brier_score(labels: FloatArray, prob: FloatArray) -> float:
    """Mean squared error of binary probabilities; NaN for no patients."""
    if labels.size == 0:
        return float("nan")
    return float(np.mean((prob - labels) ** 2))


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One probability bin of a reliability diagram: ``[low, high)`` (the last bin closed)."""

    low: float
    high: float
    count: int
    mean_predicted: float
    observed: float


def reliability_bins(labels: FloatArray, prob: FloatArray, bins: int = 10) -> list[ReliabilityBin]:
    """Mean prediction and observed rate in ``bins`` equal-width bins over ``[0, 1]``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        out.append(
            ReliabilityBin(
                low=float(edges[b]),
                high=float(edges[b + 1]),
                count=n,
                mean_predicted=float(prob[inside].mean()) if n else float("nan"),
                observed=float(labels[inside].mean()) if n else float("nan"),
            )
        )
    return out


def expected_calibration_error(labels: FloatArray, prob: FloatArray, bins: int = 10) -> float:
    """ECE: the count-weighted mean |observed rate - mean prediction| over equal-width bins
    (Naeini et al. 2015; the form Guo et al. 2017 report). NaN for no patients."""
    if labels.size == 0:
        return float("nan")
    total = 0.0
    for b in reliability_bins(labels, prob, bins):
        if b.count:
            total += b.count * abs(b.observed - b.mean_predicted)
    return total / labels.size


def bootstrap_intervals(
    statistic: Callable[[IntArray], dict[str, float]],
    n: int,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of several figures over ``n`` independent units.

    Args:
        statistic: Computes the figures from an index array into the units (a resample of
            patients, with repeats); a figure may be NaN (e.g. one class only), then that
            resample is skipped for it.
        n: Number of units (patients: several scores of one patient are not independent).
        resamples: Bootstrap resamples.
        seed: Seed of the resampling, so a report is reproducible.
        level: Coverage of the intervals.

    Returns:
        ``name -> (low, high)``; NaN where fewer than half the resamples give a finite value.
    """
    if n == 0 or resamples <= 0:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        for name, value in statistic(rng.integers(0, n, n)).items():
            draws.setdefault(name, []).append(value)
    tail = (1.0 - level) / 2.0 * 100.0
    out = {}
    for name, values in draws.items():
        finite = np.asarray(values)[np.isfinite(values)]
        if finite.size < resamples / 2:
            out[name] = (float("nan"), float("nan"))
        else:
            low, high = np.percentile(finite, [tail, 100.0 - tail])
            out[name] = (float(low), float(high))
    return out
