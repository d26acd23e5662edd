"""Each loss term is finite, has the right sign and trains the parts it should."""

from __future__ import annotations

import math

import pytest
import torch

from dipro import DiPro, DiproConfig
from dipro.losses import LossTerms, compute_losses, estimate_class_balance
from dipro.pae import static_order_loss
from tests.unit.model.conftest import synthetic


def _terms(model: DiPro, config: DiproConfig, seed: int = 0) -> LossTerms:
    batch, targets = synthetic(6, seed=seed, min_cxrs=2, max_cxrs=4)
    model.train()
    out = model(batch, with_reversed=True)
    balance = estimate_class_balance([targets])
    return compute_losses(out, targets, config, model.pae_heads, balance)


def _grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_every_term_is_finite_and_non_negative(tiny_config: DiproConfig) -> None:
    terms = _terms(DiPro(tiny_config), tiny_config)
    for name, value in terms.as_floats().items():
        assert math.isfinite(value), name
        assert value >= 0.0, name
    assert terms.progression.item() > 0
    assert terms.dynamic_order.item() > 0
    assert terms.temporal_consistency.item() > 0  # patients with 3+ CXRs have adjacent pairs


@pytest.mark.parametrize(
    ("term", "trained", "untouched"),
    [
        ("orthogonality", ["std.static_head", "std.dynamic_head", "backbone"], ["heads"]),
        ("dynamic_order", ["pae_heads", "std.dynamic_head", "backbone"], ["std.static_head"]),
        ("static_order", ["std.static_head", "backbone"], ["std.dynamic_head", "pae_heads"]),
        ("temporal_consistency", ["std.static_head"], ["std.dynamic_head", "heads"]),
        ("progression", ["heads", "std.dynamic_head", "ehr_encoder", "backbone"], ["pae_heads"]),
        ("mortality", ["heads", "static_fusion", "ehr_cross"], ["pae_heads"]),
        ("los", ["heads", "final_layer"], ["pae_heads"]),
    ],
)
def test_each_term_sends_gradient_to_the_parts_it_trains(
    tiny_config: DiproConfig, term: str, trained: list[str], untouched: list[str]
) -> None:
    model = DiPro(tiny_config)
    getattr(_terms(model, tiny_config), term).backward()
    for name in trained:
        assert _grad_norm(model.get_submodule(name)) > 0, f"{term} does not train {name}"
    for name in untouched:
        assert _grad_norm(model.get_submodule(name)) == 0, f"{term} leaks into {name}"


def test_static_order_stops_the_gradient_through_the_reversed_branch(
    tiny_config: DiproConfig,
) -> None:
    model = DiPro(tiny_config).eval()
    batch, _ = synthetic(3, min_cxrs=2, max_cxrs=2)
    parts = model(batch, with_reversed=True).parts
    assert parts.static_reversed is not None

    valid = torch.ones(3, 1, dtype=torch.bool)
    loss = static_order_loss(parts, valid)
    to_reversed, to_forward = torch.autograd.grad(
        loss, [parts.static_reversed, parts.static], allow_unused=True
    )
    assert to_reversed is None
    assert to_forward is not None
    assert float(to_forward.abs().sum()) > 0


def test_patients_without_a_pair_contribute_no_progression_loss(tiny_config: DiproConfig) -> None:
    model = DiPro(tiny_config)
    batch, targets = synthetic(4, min_cxrs=0, max_cxrs=1)
    out = model(batch, with_reversed=True)
    terms = compute_losses(out, targets, tiny_config, model.pae_heads)
    assert terms.progression.item() == 0.0
    assert terms.orthogonality.item() == 0.0
    assert terms.dynamic_order.item() == 0.0
    assert terms.mortality.item() > 0.0


def test_mortality_pos_weight_is_negatives_over_positives() -> None:
    _, targets = synthetic(40)
    positives = float(targets.mortality.sum())
    balance = estimate_class_balance([targets])
    assert balance.mortality_pos_weight == pytest.approx((40 - positives) / positives)
    assert balance.progression is not None
    assert balance.progression.shape == (7, 3)
