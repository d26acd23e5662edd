"""The numpy metrics agree with their definitions on small hand-checkable cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dipro.metrics import (
    average_precision,
    cohen_kappa,
    macro_f1,
    pr_auc_trapezoid,
    progression_metrics,
    roc_auc,
)


def _pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_equals_the_pairwise_win_rate_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60).astype(np.int64)
    s = np.round(rng.random(60), 1)  # many ties
    assert roc_auc(y, s) == pytest.approx(_pairwise_auc(y, s))


def test_auroc_is_undefined_with_one_class() -> None:
    assert np.isnan(roc_auc(np.ones(4, np.int64), np.arange(4.0)))


def test_average_precision_matches_the_textbook_example() -> None:
    # sklearn docs: y=[0,0,1,1], s=[.1,.4,.35,.8] -> AP 0.8333
    y = np.array([0, 0, 1, 1], np.int64)
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert average_precision(y, s) == pytest.approx(0.8333333)
    assert 0.0 < pr_auc_trapezoid(y, s) <= 1.0


def test_perfect_ranking_scores_one() -> None:
    y = np.array([0, 0, 1, 1], np.int64)
    s = np.array([0.1, 0.2, 0.8, 0.9])
    assert roc_auc(y, s) == 1.0
    assert average_precision(y, s) == 1.0
    assert pr_auc_trapezoid(y, s) == pytest.approx(1.0)


def test_macro_f1_and_kappa_on_a_known_confusion() -> None:
    y = np.array([0, 0, 1, 1, 2, 2], np.int64)
    p = np.array([0, 1, 1, 1, 2, 0], np.int64)
    # F1: class0 1/2, class1 4/5, class2 2/3
    assert macro_f1(y, p, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # po = 4/6, pe = (2*2 + 2*3 + 2*1)/36 = 1/3 -> kappa = 0.5
    assert cohen_kappa(y, p, 3) == pytest.approx(0.5)


def test_progression_metrics_skip_ignored_labels() -> None:
    labels = np.array([[0, 3], [1, 3], [2, 3]], np.int64)
    prob = np.zeros((3, 2, 3))
    prob[np.arange(3), 0, [0, 1, 2]] = 1.0
    prob[:, 1] = 1 / 3
    m = progression_metrics(labels, prob)
    assert m.accuracy == 1.0
    assert m.auroc == 1.0
    assert m.count == 3


def test_brier_and_ece_of_a_perfectly_calibrated_and_a_shifted_predictor() -> None:
    from dipro.metrics import brier_score, expected_calibration_error, reliability_bins

    rng = np.random.default_rng(0)
    risk = rng.uniform(0.0, 1.0, 20000)
    labels = (rng.random(risk.size) < risk).astype(np.float64)
    assert expected_calibration_error(labels, risk) < 0.02
    assert expected_calibration_error(labels, np.clip(risk + 0.2, 0, 1)) > 0.15
    assert brier_score(labels, risk) < brier_score(labels, np.full(risk.size, 0.5))
    bins = reliability_bins(labels, risk, 10)
    assert sum(b.count for b in bins) == risk.size
    assert all(abs(b.observed - b.mean_predicted) < 0.05 for b in bins)


def test_bootstrap_intervals_cover_the_point_and_shrink_with_more_patients() -> None:
    from dipro.metrics import bootstrap_intervals, roc_auc

    def widths(n: int) -> tuple[float, float]:
        rng = np.random.default_rng(n)
        y = (rng.random(n) < 0.3).astype(np.int64)
        score = y + rng.normal(0, 1.0, n)

        def stat(idx: np.ndarray) -> dict[str, float]:
            return {"auroc": roc_auc(y[idx], score[idx])}

        low, high = bootstrap_intervals(stat, n, resamples=300, seed=1)["auroc"]
        assert low <= roc_auc(y, score) <= high
        return low, high

    small, large = widths(60), widths(2000)
    assert (large[1] - large[0]) < (small[1] - small[0]) / 3
