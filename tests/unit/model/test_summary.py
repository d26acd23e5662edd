"""The EHR summary path (dipro.summary): its statistics, its start at zero, old cards."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from dipro import DiPro, DiproConfig
from dipro.config import DiproConfig as Config
from dipro.stacking import EQUAL, MIXES, fit_regression, stack
from dipro.summary import STATISTICS, window_statistics
from dipro.vocab import DEMOGRAPHIC_COLUMNS, PROGRESSION_IGNORE, VARIABLES
from dipro_fhir.core.timeline import PatientId, PatientTimeline
from dipro_fhir.evaluation.summaries import FEATURE_NAMES, summarise
from tests.unit.model.conftest import synthetic


def test_window_statistics_read_only_observed_values_of_real_rows() -> None:
    values = torch.tensor([[[5.0, 1.0], [7.0, 9.0], [3.0, 9.0], [100.0, 100.0]]])  # [1, 4, 2]
    mask = torch.tensor([[[True, False], [False, False], [True, False], [True, True]]])
    rows = torch.tensor([[True, True, True, False]])  # the last row is padding
    stats = window_statistics(values, mask, rows).reshape(2, len(STATISTICS))
    by_name = dict(zip(STATISTICS, stats[0].tolist(), strict=True))
    assert by_name == pytest.approx(
        {
            "last": 3.0,
            "mean": 4.0,
            "min": 3.0,
            "max": 5.0,
            "change": -2.0,
            "observed": 2 / 3,
        }
    )
    assert stats[1].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # never observed: all zero


def test_the_summary_path_starts_at_zero_and_learns(tiny_config: DiproConfig) -> None:
    model = DiPro(dataclasses.replace(tiny_config, summary_path=True))
    assert model.summary is not None
    batch, _ = synthetic(3)
    model.eval()
    with torch.no_grad():
        wide = model(batch)
        path, model.summary = model.summary, None
        plain = model(batch)
        model.summary = path
    for task in ("mortality", "los", "progression"):
        a, b = getattr(wide, task), getattr(plain, task)
        assert a is not None
        assert b is not None
        assert torch.equal(a, b), task
    model.train()
    out = model(batch)
    assert out.mortality is not None
    out.mortality.sum().backward()
    grad = path.linear.weight.grad
    assert grad is not None
    assert bool((grad != 0).any())


def test_a_card_written_before_the_summary_path_loads_without_it(
    tiny_config: DiproConfig,
) -> None:
    data = tiny_config.to_dict()
    del data["summary_path"]
    assert Config.from_dict(data).summary_path is False
    data["made_up"] = 1
    with pytest.raises(ValueError, match="made_up"):
        Config.from_dict(data)


def test_window_statistics_agree_with_the_baseline_summaries() -> None:
    """The network's statistics are the logistic-regression baseline's, variable by variable."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(1, 6, len(VARIABLES))).astype(np.float32)
    mask = rng.random(size=values.shape) < 0.5
    mask[0, :, 0] = False  # one variable never observed
    rows = np.ones((1, 6), dtype=bool)
    ours = window_statistics(
        torch.from_numpy(values), torch.from_numpy(mask), torch.from_numpy(rows)
    ).numpy()
    theirs = np.concatenate(
        [summarise(_timeline(values[0], mask[0])), np.zeros(len(DEMOGRAPHIC_COLUMNS))]
    )[: ours.shape[1]]
    assert ours.shape[1] == len(FEATURE_NAMES) - len(DEMOGRAPHIC_COLUMNS)
    np.testing.assert_allclose(ours[0], np.nan_to_num(theirs, nan=0.0), rtol=1e-5, atol=1e-6)


def _timeline(values: np.ndarray, mask: np.ndarray) -> PatientTimeline:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    return PatientTimeline(
        patient_id=PatientId("p"),
        encounter_id=None,
        as_of=when,
        window_start=when - timedelta(hours=values.shape[0]),
        ehr_values=np.where(mask, values, np.nan).astype(np.float32),
        ehr_mask=mask,
        ehr_hours=np.arange(values.shape[0], dtype=np.float32),
        demographics=np.zeros(len(DEMOGRAPHIC_COLUMNS), dtype=np.float32),
    )


def test_stacking_mixes_the_network_with_the_fitted_regression(
    tiny_config: DiproConfig,
) -> None:
    model = DiPro(dataclasses.replace(tiny_config, summary_path=True))
    path, model.summary = model.summary, None
    assert path is not None
    data = [synthetic(16, seed=s) for s in range(4)]
    batch, targets = data[3]
    model.eval()
    with torch.no_grad():
        alone = model(batch)
    penalties = fit_regression(path, model.heads.layout, data[:3], data[3:])
    assert {"mortality", "los"} <= set(penalties)
    assert not any(p.requires_grad for p in path.parameters())
    path.eval()
    with torch.no_grad():
        regression = path(batch.ehr_values, batch.ehr_mask, batch.ehr_row_mask, batch.demographics)
    columns = model.heads.layout["progression"][0] * 3
    # Length of stay as if its regression had not been fitted: the network alone.
    weights = stack(model, path, data[3:], fitted=set(penalties) - {"los"})
    assert model.summary is path
    assert set(weights) == {f"progression:{k}" for k in range(7)} | {"mortality", "los"}
    assert weights["mortality"] == EQUAL
    assert weights["los"] == 0.0
    with torch.no_grad():
        stacked = model(batch)
    assert alone.mortality is not None
    assert stacked.mortality is not None
    torch.testing.assert_close(
        stacked.mortality,
        (1 - EQUAL) * alone.mortality + EQUAL * regression[:, columns],
        rtol=1e-4,
        atol=1e-5,
    )
    assert alone.los is not None
    assert stacked.los is not None
    torch.testing.assert_close(stacked.los, alone.los, rtol=1e-5, atol=1e-6)
    # A finding's weight is chosen on these patients' log-loss: never worse than the network.
    assert alone.progression is not None
    assert stacked.progression is not None
    chosen = 0
    for k in range(7):
        w = weights[f"progression:{k}"]
        assert w in MIXES
        y = targets.progression[:, k]
        keep = (y != PROGRESSION_IGNORE) & alone.used_pairs
        if w == 0.0 or not bool(keep.any()):
            continue
        chosen += 1

        def loss(
            z: torch.Tensor, k: int = k, y: torch.Tensor = y, keep: torch.Tensor = keep
        ) -> float:
            return float(torch.nn.functional.cross_entropy(z[keep, k], y[keep]))

        assert loss(stacked.progression) <= loss(alone.progression) + 1e-6
    assert chosen > 0, weights
