"""Progression-Aware Enhancement, PAE (reference §2.4; paper §3.3).

Reversing the order of a CXR pair must leave its static features unchanged and flip its
dynamics: "worsened" becomes "improved" and vice versa, "no change" stays. Seven per-finding
heads read each region's dynamic feature D (forward) and D~ (reversed) and are trained on the
region-level labels (§3.1) with the reversed label for D~. Deliberate fixes (MODEL_CARD.md):
the reversed input is the swapped concatenation (§7.1.1), and padded pairs are excluded from
both losses (§7.1.8).
"""

from __future__ import annotations

import torch
from torch import nn

from dipro.disentangle import Disentangled
from dipro.vocab import PROGRESSION_IGNORE

#: Label permutation under reversal: worsened(0) <-> improved(1); no change(2), ignore(3) stay.
REVERSED_LABEL = (1, 0, 2, 3)


def reverse_labels(labels: torch.Tensor) -> torch.Tensor:
    """Map progression labels of a pair to those of the reversed pair (paper's "-y").

    Args:
        labels: int64 tensor with values in 0..3.
    """
    table = torch.tensor(REVERSED_LABEL, dtype=labels.dtype, device=labels.device)
    return table[labels]


class ProgressionHeads(nn.Module):
    """f_k, k = 1..K: Linear(D -> D) -> ReLU -> Linear(D -> 3), one per finding."""

    def __init__(self, d_model: int, num_findings: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 3))
            for _ in range(num_findings)
        )

    def forward(self, dynamic: torch.Tensor) -> torch.Tensor:
        """Return logits [B, P, R, K, 3] for dynamic features [B, P, R, D]."""
        return torch.stack([head(dynamic) for head in self.heads], dim=-2)


def static_order_loss(parts: Disentangled, pair_valid: torch.Tensor) -> torch.Tensor:
    """L_static: element-wise MSE between S and stop-grad(S~) over valid pairs (§2.4)."""
    if parts.static_reversed is None:
        raise ValueError("static_order_loss needs the reversed features (with_reversed=True)")
    diff = (parts.static - parts.static_reversed.detach()).pow(2).mean(dim=-1)  # [B, P, R]
    weight = pair_valid[:, :, None].expand_as(diff).to(diff.dtype)
    return (diff * weight).sum() / weight.sum().clamp(min=1.0)


def weighted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, class_weight: torch.Tensor | None
) -> torch.Tensor:
    """Class-weighted CE (weighted mean) ignoring label 3; 0 when nothing is labelled.

    Args:
        logits: float [M, 3].
        labels: int64 [M].
        class_weight: float [3] or None.
    """
    keep = labels != PROGRESSION_IGNORE
    if not bool(keep.any()):
        return logits.sum() * 0.0
    weight = None if class_weight is None else class_weight.to(logits.dtype)
    return nn.functional.cross_entropy(logits[keep].float(), labels[keep], weight=weight)


def dynamic_order_loss(
    heads: ProgressionHeads,
    parts: Disentangled,
    region_labels: torch.Tensor,
    pair_valid: torch.Tensor,
    class_weights: torch.Tensor | None,
) -> torch.Tensor:
    """L_dyn: per finding, one weighted CE over forward and reversed predictions; sum over K.

    Args:
        heads: The per-finding heads.
        parts: STD output with reversed features.
        region_labels: int64 [B, P, R, K], 3 = ignore.
        pair_valid: bool [B, P]; labels of invalid pairs are ignored.
        class_weights: float [K, 3] balanced weights, or None for unweighted.
    """
    if parts.dynamic_reversed is None:
        raise ValueError("dynamic_order_loss needs the reversed features (with_reversed=True)")
    ignore = torch.full_like(region_labels, PROGRESSION_IGNORE)
    labels = torch.where(pair_valid[:, :, None, None], region_labels, ignore)
    logits = heads(parts.dynamic)  # [B, P, R, K, 3]
    logits_rev = heads(parts.dynamic_reversed)
    total: torch.Tensor = logits.sum() * 0.0
    for k in range(logits.shape[-2]):
        both_logits = torch.cat(
            [logits[..., k, :].reshape(-1, 3), logits_rev[..., k, :].reshape(-1, 3)]
        )
        both_labels = torch.cat(
            [labels[..., k].reshape(-1), reverse_labels(labels[..., k]).reshape(-1)]
        )
        weight = None if class_weights is None else class_weights[k]
        total = total + weighted_cross_entropy(both_logits, both_labels, weight)
    return total
