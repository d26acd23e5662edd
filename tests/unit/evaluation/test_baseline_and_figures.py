"""The logistic-regression baseline learns what a linear model can and survives its file; the
figures carry bootstrap intervals; the notes say what a small set cannot show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dipro.metrics import roc_auc
from dipro.predictions import Predictions
from dipro.vocab import FINDINGS, PROGRESSION_IGNORE
from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.evaluation.baseline import fit_baseline, load_baseline
from dipro_fhir.evaluation.figures import model_figures
from dipro_fhir.evaluation.notes import evaluation_notes
from dipro_fhir.evaluation.summaries import FEATURE_NAMES

F = len(FEATURE_NAMES)


def _cohort(n: int, seed: int) -> tuple[np.ndarray, Predictions]:
    """Features with a linear signal for death and length of stay, some NaN (unobserved)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, F))
    logit = -2.0 + 1.5 * x[:, 0] - 1.0 * x[:, 1]
    died = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    los = np.clip(np.digitize(x[:, 2] + 0.3 * rng.normal(size=n), [-0.7, 0.0, 0.7]), 0, 3)
    progression = np.full((n, len(FINDINGS)), PROGRESSION_IGNORE, dtype=np.int64)
    progression[:, 0] = np.where(x[:, 3] > 0.5, 0, np.where(x[:, 3] < -0.5, 1, 2))
    x[rng.random((n, F)) < 0.1] = np.nan
    labels = Predictions(None, died, None, los.astype(np.int64), None, progression)
    return x, labels


def test_the_baseline_learns_a_linear_signal_and_round_trips_its_file(tmp_path: Path) -> None:
    train, val, test = _cohort(1500, 1), _cohort(400, 2), _cohort(2000, 3)
    baseline = fit_baseline(*train, *val)
    pred = baseline.predict(*test)
    assert pred.mortality is not None
    assert roc_auc(test[1].mortality_labels.astype(np.int64), pred.mortality) > 0.72
    assert pred.los is not None
    assert (pred.los.argmax(1) == test[1].los_labels).mean() > 0.45  # chance: about 0.25
    assert pred.progression is not None
    labelled = test[1].progression_labels[:, 0]
    assert (pred.progression[:, 0].argmax(1) == labelled).mean() > 0.6
    # A finding without labels gets the training prevalence (uniform when it has none).
    np.testing.assert_allclose(pred.progression[:, 1], 1 / 3)
    baseline.save(tmp_path)
    again = load_baseline(tmp_path).predict(*test)
    assert again.mortality is not None
    np.testing.assert_allclose(again.mortality, pred.mortality)


def test_a_missing_baseline_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelContractError, match="dipro-fhir train"):
        load_baseline(tmp_path)


def _figures(n: int, deaths: int) -> dict:
    rng = np.random.default_rng(n)
    y = np.zeros(n)
    y[:deaths] = 1.0
    p = np.clip(0.2 + 0.15 * y + rng.normal(0, 0.15, n), 0.01, 0.99)
    pred = Predictions(p, y, None, np.full(n, -1), None, np.full((n, 7), 3))
    return model_figures(pred, resamples=200, seed=0)


def test_figures_have_intervals_that_narrow_with_more_patients() -> None:
    small, large = _figures(40, 8)["mortality"], _figures(2000, 400)["mortality"]
    for figures in (small, large):
        for name in ("auroc", "auprc", "brier", "ece"):
            f = figures[name]
            assert f["low"] <= f["value"] <= f["high"], name
    width = lambda f: f["auroc"]["high"] - f["auroc"]["low"]  # noqa: E731
    assert width(large) < width(small) / 3
    assert sum(b["patients"] for b in large["reliability"]) == 2000
    assert "los" not in _figures(40, 8)


def test_notes_say_when_a_set_is_too_small_to_show_anything() -> None:
    record = {
        "patients": {"patients": 11, "examples": 11, "skipped": {}},
        "models": {"dipro": {"mortality": _figures(11, 1)["mortality"]}},
        "subgroups": [{"attribute": "sex", "group": "female", "patients": 4}],
    }
    notes = " ".join(evaluation_notes(record))
    assert "Only 1 deaths and 10 survivors" in notes
    assert "Progression is not evaluated" in notes
    assert "too small to compare: sex=female (4)" in notes
