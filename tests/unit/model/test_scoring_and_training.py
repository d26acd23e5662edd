"""Scoring returns probabilities; the trainer selects the epoch of lowest validation loss, refuses
a network that did not learn, and writes its history as JSON."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dipro import DiPro, DiproConfig
from dipro.report import evaluate, write_metrics_json
from dipro.scoring import score, score_batches
from dipro.synthetic import split_into_batches
from dipro.train import FitSettings, TrainingFailed, fit
from tests.unit.model.conftest import synthetic


def test_scores_are_probabilities_and_flag_the_ehr_only_path(tiny_model: DiPro) -> None:
    batch, _ = synthetic(4, min_cxrs=0, max_cxrs=3)
    result = score(tiny_model, batch)
    assert result.progression is not None
    assert result.mortality is not None
    assert result.los is not None
    torch.testing.assert_close(result.progression.sum(-1), torch.ones(4, 7))
    torch.testing.assert_close(result.los.sum(-1), torch.ones(4))
    assert bool(((result.mortality > 0) & (result.mortality < 1)).all())
    assert torch.equal(result.used_pairs, batch.cxr_mask.sum(1) >= 2)
    assert tiny_model.training is False


def test_score_batches_scores_every_batch_in_order(tiny_model: DiPro) -> None:
    batch, targets = synthetic(5)
    parts = [b for b, _ in split_into_batches(batch, targets, 2)]
    results = list(score_batches(tiny_model, parts))
    assert [r.used_pairs.shape[0] for r in results] == [2, 2, 1]
    whole = score(tiny_model, batch)
    assert whole.mortality is not None
    joined = torch.cat([r.mortality for r in results if r.mortality is not None])
    torch.testing.assert_close(joined, whole.mortality, atol=1e-5, rtol=0)


def test_fit_refuses_a_network_that_learned_nothing(
    tiny_config: DiproConfig, tmp_path: Path
) -> None:
    model = DiPro(tiny_config)
    batch, targets = synthetic(8, seed=1)
    data = split_into_batches(batch, targets, 4)
    settings = FitSettings(
        epochs=10,
        min_epochs=2,
        patience=2,
        device="cpu",
        learning_rate=1e-12,  # nothing improves
        metrics_path=tmp_path / "history.json",
    )
    with pytest.raises(TrainingFailed, match="no epoch beat the untrained network"):
        fit(model, data, data, settings)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["history"]) == 3  # min epochs, then patience without improvement
    assert history["criterion"] >= history["initial_criterion"]


def test_fit_chooses_the_epoch_of_lowest_validation_loss_and_writes_its_history(
    tiny_config: DiproConfig, tmp_path: Path
) -> None:
    model = DiPro(dataclasses.replace(tiny_config, learning_rate=3e-3))
    batch, targets = synthetic(48, seed=2)
    data = split_into_batches(batch, targets, 8)
    settings = FitSettings(
        epochs=6, min_epochs=6, device="cpu", seed=1, metrics_path=tmp_path / "history.json"
    )
    try:
        result = fit(model, data, data, settings)
    except TrainingFailed:
        pytest.fail("the tiny network should learn its own training data")
    history = json.loads((tmp_path / "history.json").read_text())
    criteria = [r["criterion"] for r in history["history"]]
    assert result.best_epoch == history["best_epoch"] == criteria.index(min(criteria))
    assert result.criterion == min(criteria) < result.initial_criterion
    assert set(result.tasks) == {"progression", "mortality", "los"}
    assert set(history["history"][0]["loss_ratios"]) == set(result.tasks)
    report = evaluate(model, data)
    assert report.progression is not None
    assert report.mortality is not None
    write_metrics_json(report, tmp_path / "metrics.json")
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert set(written) == {"progression", "mortality", "los"}
    assert set(written["mortality"]) >= {"auroc", "auprc", "macro_f1", "accuracy"}


def test_fit_refuses_a_head_without_training_labels(tiny_config: DiproConfig) -> None:
    batch, targets = synthetic(8, seed=3)
    unlabelled = dataclasses.replace(targets, progression=torch.full_like(targets.progression, 3))
    data = split_into_batches(batch, unlabelled, 4)
    with pytest.raises(TrainingFailed, match="no training labels for progression"):
        fit(DiPro(tiny_config), data, data, FitSettings(epochs=1, device="cpu"))


def test_fit_reduces_the_training_loss(tiny_config: DiproConfig, tmp_path: Path) -> None:
    model = DiPro(dataclasses.replace(tiny_config, learning_rate=3e-3))
    batch, targets = synthetic(16, seed=2)
    data = split_into_batches(batch, targets, 8)
    settings = FitSettings(
        epochs=4, patience=10, device="cpu", seed=1, metrics_path=tmp_path / "history.json"
    )
    with contextlib.suppress(TrainingFailed):  # 16 patients may not beat the prevalence
        fit(model, data, data, settings)
    history = json.loads((tmp_path / "history.json").read_text())["history"]
    assert len(history) == 4
    assert history[-1]["train_losses"]["total"] < history[0]["train_losses"]["total"]
