"""Calibration maps fitted on validation predictions put shifted probabilities back, keep a
binary ranking, and survive the model card's JSON."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dipro.calibration import BinaryScaling, Calibration, ClassScaling, fit_binary, fit_classes
from dipro.metrics import brier_score, expected_calibration_error, roc_auc


def _shifted_binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True risks, labels drawn from them, and an over-confident, upward-shifted model."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(-2.0, 1.2, n)
    truth = 1 / (1 + np.exp(-logit))
    labels = (rng.random(n) < truth).astype(np.float64)
    shifted = 1 / (1 + np.exp(-(2.0 * logit + 1.5)))  # what a pos_weight does to a model
    return truth, labels, shifted


def test_platt_scaling_repairs_a_shifted_model_without_changing_its_ranking() -> None:
    _, labels, shifted = _shifted_binary(4000, seed=1)
    _, test_labels, test_shifted = _shifted_binary(4000, seed=2)
    scaling = fit_binary(labels, shifted)
    assert scaling is not None
    calibrated = scaling.apply(torch.as_tensor(test_shifted)).double().numpy()
    before = expected_calibration_error(test_labels, test_shifted)
    after = expected_calibration_error(test_labels, calibrated)
    assert before > 0.05
    assert after < before / 3
    assert brier_score(test_labels, calibrated) < brier_score(test_labels, test_shifted)
    auroc = roc_auc(test_labels.astype(np.int64), test_shifted)
    assert roc_auc(test_labels.astype(np.int64), calibrated) == pytest.approx(auroc, abs=1e-9)


def test_class_scaling_fixes_a_tempered_softmax() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 1.0, (3000, 4))
    truth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in truth])
    flat = np.exp(0.3 * logits + [1.0, 0, 0, 0])
    flat /= flat.sum(1, keepdims=True)
    scaling = fit_classes(labels, flat)
    assert scaling is not None
    assert scaling.scale == pytest.approx(1 / 0.3, rel=0.15)
    fixed = scaling.apply(torch.as_tensor(flat)).double().numpy()
    nll_before = -np.log(flat[np.arange(labels.size), labels]).mean()
    nll_after = -np.log(fixed[np.arange(labels.size), labels]).mean()
    assert nll_after < nll_before - 0.05


def test_too_few_labels_or_one_class_keeps_the_raw_probabilities() -> None:
    assert fit_binary(np.zeros(100), np.full(100, 0.3)) is None
    assert fit_binary(np.array([0.0, 1.0] * 5), np.full(10, 0.3)) is None
    assert fit_classes(np.zeros(50, dtype=np.int64), np.full((50, 3), 1 / 3)) is None


def test_calibration_round_trips_through_json() -> None:
    calibration = Calibration(
        mortality=BinaryScaling(0.8, -0.4),
        los=ClassScaling(1.2, (0.1, 0.0, -0.1, 0.2)),
        progression=tuple(ClassScaling(1.0, (0.0, 0.1, -0.1)) for _ in range(7)),
        fitted_on=(("mortality", 120),),
    )
    assert Calibration.from_json(calibration.to_json()) == calibration
    assert Calibration.from_json({}) == Calibration()
    with pytest.raises(ValueError, match="unknown calibration kind"):
        Calibration.from_json({"kind": "other"})
