"""Scoring returns probabilities; the trainer stops early, restores the best epoch, writes JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from dipro import DiPro, DiproConfig
from dipro.scoring import score, score_batches
from dipro.synthetic import split_into_batches
from dipro.train import FitSettings, evaluate, fit, write_metrics_json
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


def test_fit_stops_after_patience_and_restores_the_best_epoch(
    tiny_config: DiproConfig, tmp_path: Path
) -> None:
    config = dataclasses.replace(tiny_config, learning_rate=0.0)  # nothing improves
    model = DiPro(config)
    batch, targets = synthetic(8, seed=1)
    data = split_into_batches(batch, targets, 4)
    settings = FitSettings(
        epochs=10,
        patience=2,
        device="cpu",
        learning_rate=1e-12,
        metrics_path=tmp_path / "history.json",
    )
    result = fit(model, data, data, settings)
    assert len(result.history) == 3  # epoch 0 best, two more without improvement
    assert result.monitor == "progression/macro_f1"
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["best_epoch"] == result.best_epoch == 0
    report = evaluate(model, data)
    assert report.progression is not None
    assert report.mortality is not None
    write_metrics_json(report, tmp_path / "metrics.json")
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert set(written) == {"progression", "mortality", "los"}
    assert set(written["mortality"]) >= {"auroc", "auprc", "macro_f1", "accuracy"}


def test_fit_reduces_the_training_loss(tiny_config: DiproConfig) -> None:
    model = DiPro(dataclasses.replace(tiny_config, learning_rate=3e-3))
    batch, targets = synthetic(16, seed=2)
    data = split_into_batches(batch, targets, 8)
    result = fit(model, data, data, FitSettings(epochs=4, patience=10, device="cpu", seed=1))
    first, last = result.history[0].train_losses, result.history[-1].train_losses
    assert last["total"] < first["total"]
