"""Figures of held-out predictions, each with a bootstrap 95 % interval over patients.

Per model (DiPro and its ablations, the logistic-regression and prevalence baselines) and task:

* mortality: AUROC, AUPRC (average precision), Brier score, expected calibration error (ten
  equal-width bins), and the reliability diagram's bins;
* length of stay: accuracy, macro-F1, Cohen's kappa over the four bins;
* progression: per-finding one-vs-rest AUROC, their mean, and the mean macro-F1 over findings,
  on the labelled findings of patients with a CXR pair.

Intervals resample patients (a patient's scores are not independent), with a fixed seed so
the same predictions give the same report. A figure that a resample cannot define (one class
only) skips that resample; with fewer than half defined, the interval is null. JSON-ready:
NaN becomes null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dipro.metrics import (
    average_precision,
    binary_metrics,
    bootstrap_intervals,
    brier_score,
    expected_calibration_error,
    multiclass_metrics,
    progression_metrics,
    reliability_bins,
    roc_auc,
)
from dipro.predictions import Predictions
from dipro.vocab import FINDINGS, PROGRESSION_IGNORE

IntArray = npt.NDArray[np.int64]
Figures = dict[str, Any]

ECE_BINS: Final[int] = 10


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _with_intervals(
    point: dict[str, float],
    statistic: Callable[[IntArray], dict[str, float]],
    n: int,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, float | None]]:
    intervals = bootstrap_intervals(statistic, n, resamples=resamples, seed=seed)
    return {
        name: {
            "value": _number(value),
            "low": _number(intervals.get(name, (math.nan, math.nan))[0]),
            "high": _number(intervals.get(name, (math.nan, math.nan))[1]),
        }
        for name, value in point.items()
    }


def mortality_figures(pred: Predictions, resamples: int, seed: int) -> Figures | None:
    """Mortality figures with intervals, counts and reliability bins (None: no head)."""
    if pred.mortality is None or pred.mortality_labels.size == 0:
        return None
    y, p = pred.mortality_labels, pred.mortality

    def stats(idx: IntArray) -> dict[str, float]:
        yi, pi = y[idx], p[idx]
        return {
            "auroc": roc_auc(yi.astype(np.int64), pi),
            "auprc": average_precision(yi.astype(np.int64), pi),
            "brier": brier_score(yi, pi),
            "ece": expected_calibration_error(yi, pi, ECE_BINS),
        }

    figures: Figures = _with_intervals(stats(np.arange(y.size)), stats, y.size, resamples, seed)
    figures["patients"] = int(y.size)
    figures["deaths"] = int(y.sum())
    figures["mean_risk"] = float(p.mean())
    figures["reliability"] = [
        {
            "low": b.low,
            "high": b.high,
            "patients": b.count,
            "mean_predicted": _number(b.mean_predicted),
            "observed": _number(b.observed),
        }
        for b in reliability_bins(y, p, ECE_BINS)
    ]
    return figures


def los_figures(pred: Predictions, resamples: int, seed: int) -> Figures | None:
    """Length-of-stay figures with intervals (None: no head or no known stay length)."""
    known = pred.los_labels >= 0
    if pred.los is None or not known.any():
        return None
    y, p = pred.los_labels[known], pred.los[known]

    def stats(idx: IntArray) -> dict[str, float]:
        m = multiclass_metrics(y[idx], p[idx])
        return {"accuracy": m.accuracy, "macro_f1": m.macro_f1, "kappa": m.kappa}

    figures: Figures = _with_intervals(stats(np.arange(y.size)), stats, y.size, resamples, seed)
    figures["patients"] = int(y.size)
    return figures


def progression_figures(pred: Predictions, resamples: int, seed: int) -> Figures | None:
    """Progression figures with intervals (None: no head or no labelled pair)."""
    labels = pred.progression_labels
    rows = np.flatnonzero((labels != PROGRESSION_IGNORE).any(axis=1)) if labels.size else None
    if pred.progression is None or rows is None or rows.size == 0:
        return None
    y, p = labels[rows], pred.progression[rows]

    def stats(idx: IntArray) -> dict[str, float]:
        yi, pi = y[idx], p[idx]
        overall = progression_metrics(yi, pi)
        out = {"auroc": overall.auroc, "macro_f1": overall.macro_f1}
        for k, finding in enumerate(FINDINGS):
            keep = yi[:, k] != PROGRESSION_IGNORE
            out[f"auroc:{finding}"] = (
                multiclass_metrics(yi[keep, k], pi[keep, k]).auroc if keep.any() else math.nan
            )
        return out

    figures: Figures = _with_intervals(
        stats(np.arange(rows.size)), stats, rows.size, resamples, seed
    )
    figures["patients"] = int(rows.size)
    figures["labelled_findings"] = int((y != PROGRESSION_IGNORE).sum())
    return figures


def model_figures(pred: Predictions, resamples: int, seed: int) -> Figures:
    """Every task's figures of one model (tasks without figures are left out)."""
    found = {
        "mortality": mortality_figures(pred, resamples, seed),
        "los": los_figures(pred, resamples, seed),
        "progression": progression_figures(pred, resamples, seed),
    }
    return {task: figures for task, figures in found.items() if figures is not None}


def subset(pred: Predictions, rows: IntArray) -> Predictions:
    """The predictions of some patients only."""

    def take(a: npt.NDArray[Any] | None) -> Any:
        return None if a is None else a[rows]

    return Predictions(
        mortality=take(pred.mortality),
        mortality_labels=pred.mortality_labels[rows],
        los=take(pred.los),
        los_labels=pred.los_labels[rows],
        progression=take(pred.progression),
        progression_labels=pred.progression_labels[rows],
    )


def headline(pred: Predictions) -> dict[str, Any]:
    """Point figures for a subgroup table (no intervals): mortality AUROC, Brier, ECE, LoS
    accuracy, progression mean AUROC."""
    out: dict[str, Any] = {}
    if pred.mortality is not None and pred.mortality_labels.size:
        m = binary_metrics(pred.mortality_labels, pred.mortality)
        out["mortality_auroc"] = _number(m.auroc)
        out["mortality_brier"] = _number(brier_score(pred.mortality_labels, pred.mortality))
        out["mortality_ece"] = _number(
            expected_calibration_error(pred.mortality_labels, pred.mortality, ECE_BINS)
        )
    known = pred.los_labels >= 0
    if pred.los is not None and known.any():
        out["los_accuracy"] = _number(
            multiclass_metrics(pred.los_labels[known], pred.los[known]).accuracy
        )
    if pred.progression is not None and (pred.progression_labels != PROGRESSION_IGNORE).any():
        out["progression_auroc"] = _number(
            progression_metrics(pred.progression_labels, pred.progression).auroc
        )
    return out


def subgroup_figures(
    models: Mapping[str, Predictions],
    groups: Mapping[str, Mapping[str, IntArray]],
    resamples: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Per attribute and group: counts and each model's figures.

    Args:
        models: Model name -> predictions of every patient (same patient order).
        groups: Attribute (``sex``) -> group (``female``) -> patient rows.
        resamples: Bootstrap resamples for the groups' mortality AUROC interval.
        seed: Bootstrap seed.
    """
    rows_out = []
    for attribute, by_group in groups.items():
        for group, rows in sorted(by_group.items()):
            entry: dict[str, Any] = {"attribute": attribute, "group": group}
            entry["patients"] = int(rows.size)
            some = next(iter(models.values()))
            entry["deaths"] = int(some.mortality_labels[rows].sum())
            for name, pred in models.items():
                part = subset(pred, rows)
                figures = headline(part)
                if part.mortality is not None and rows.size:
                    auroc = mortality_figures(part, resamples, seed)
                    if auroc is not None:
                        figures["mortality_auroc_interval"] = [
                            auroc["auroc"]["low"],
                            auroc["auroc"]["high"],
                        ]
                entry[name] = figures
            rows_out.append(entry)
    return rows_out
