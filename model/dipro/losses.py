"""DiPro's training losses, each term returned separately (reference §2.3, §2.4, §2.8).

Total = Σ_task λ_task·L_task + λ_orth·L_orth + λ_temp·L_temp + λ_static·L_static + λ_PAE·L_dyn,
the code's form of the total (§2.8). Deliberate fixes (MODEL_CARD.md): every term averages over
real pairs only; the mortality ``pos_weight`` is negatives/positives (the usual convention), not
the code's positive fraction (§7.1.4); a patient without a valid pair has no progression label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from dipro.batch import DiproTargets
from dipro.config import DiproConfig
from dipro.disentangle import orthogonality_loss, temporal_consistency_loss
from dipro.network import DiproOutput
from dipro.pae import (
    ProgressionHeads,
    dynamic_order_loss,
    static_order_loss,
    weighted_cross_entropy,
)
from dipro.vocab import PROGRESSION_IGNORE


@dataclass(frozen=True, slots=True)
class ClassBalance:
    """Class weights estimated on the training split.

    Attributes:
        progression: float [K, 3] balanced weights N_k / (3 N_k,c) per finding (§2.4), or None.
        mortality_pos_weight: negatives / positives for BCE, or None (unweighted).
    """

    progression: torch.Tensor | None = None
    mortality_pos_weight: float | None = None


def estimate_class_balance(targets: Iterable[DiproTargets]) -> ClassBalance:
    """Compute ``ClassBalance`` from training targets (labels 3 / unknown are skipped).

    Args:
        targets: The training targets, batch by batch.
    """
    counts = torch.zeros(0)
    positives = negatives = 0.0
    for target in targets:
        labels = target.progression.cpu()
        one_hot = nn.functional.one_hot(labels.clamp(max=PROGRESSION_IGNORE), 4)[..., :3]
        batch_counts = one_hot.sum(dim=0).double()  # [K, 3]
        counts = batch_counts if counts.numel() == 0 else counts + batch_counts
        positives += float(target.mortality.sum())
        negatives += float((1 - target.mortality).sum())
    weights = None
    if counts.numel():
        total = counts.sum(dim=1, keepdim=True)
        weights = (total / (3 * counts.clamp(min=1.0))).float()
    pos_weight = negatives / positives if positives > 0 and negatives > 0 else None
    return ClassBalance(weights, pos_weight)


@dataclass(frozen=True, slots=True)
class LossTerms:
    """Every loss term (unweighted) and the weighted total; all scalar tensors."""

    total: torch.Tensor
    progression: torch.Tensor
    mortality: torch.Tensor
    los: torch.Tensor
    orthogonality: torch.Tensor
    temporal_consistency: torch.Tensor
    static_order: torch.Tensor
    dynamic_order: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """Return each term as a Python float, for logs and JSON."""
        return {name: float(getattr(self, name).detach()) for name in self.__slots__}


def progression_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    used_pairs: torch.Tensor,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    """Σ over findings of class-weighted CE, ignoring 3 and patients without a pair (§2.8)."""
    labels = torch.where(used_pairs[:, None], labels, torch.full_like(labels, PROGRESSION_IGNORE))
    total = logits.sum() * 0.0
    for k in range(logits.shape[1]):
        weight = None if weights is None else weights[k]
        total = total + weighted_cross_entropy(logits[:, k], labels[:, k], weight)
    return total


def _align_pairs(labels: torch.Tensor, pairs: int) -> torch.Tensor:
    """Pad (with 3) or cut region labels [B, P', R, K] to P pairs."""
    have = labels.shape[1]
    if have >= pairs:
        return labels[:, :pairs]
    b, _, r, k = labels.shape
    pad = labels.new_full((b, pairs - have, r, k), PROGRESSION_IGNORE)
    return torch.cat([labels, pad], dim=1)


def compute_losses(
    output: DiproOutput,
    targets: DiproTargets,
    config: DiproConfig,
    pae_heads: ProgressionHeads,
    balance: ClassBalance | None = None,
) -> LossTerms:
    """Compute every term and the weighted total.

    Args:
        output: A forward pass with reversed features (``with_reversed=True``).
        targets: Labels for the batch.
        config: Supplies the loss weights and the tasks.
        pae_heads: The network's per-finding region heads (``model.pae_heads``).
        balance: Class weights from the training split, or None (unweighted).
    """
    balance = balance or ClassBalance()
    parts, valid = output.parts, output.pair_valid
    zero = parts.static.sum() * 0.0
    prog = mort = los = zero
    if output.progression is not None:
        prog = progression_loss(
            output.progression.float(),
            targets.progression,
            output.used_pairs,
            None if balance.progression is None else balance.progression.to(zero.device),
        )
    if output.mortality is not None:
        pos = balance.mortality_pos_weight
        pos_weight = None if pos is None else torch.tensor(pos, device=zero.device)
        mort = nn.functional.binary_cross_entropy_with_logits(
            output.mortality.float(), targets.mortality, pos_weight=pos_weight
        )
    if output.los is not None and bool((targets.los >= 0).any()):
        los = nn.functional.cross_entropy(output.los.float(), targets.los, ignore_index=-1)
    orth = orthogonality_loss(parts, valid)
    temp = temporal_consistency_loss(parts, valid)
    static = static_order_loss(parts, valid)
    dyn = zero
    if targets.region_progression is not None:
        dyn = dynamic_order_loss(
            pae_heads,
            parts,
            _align_pairs(targets.region_progression, valid.shape[1]),
            valid,
            None if balance.progression is None else balance.progression.to(zero.device),
        )
    w = config.loss_weights
    total = (
        w.progression * prog
        + w.mortality * mort
        + w.los * los
        + w.orthogonality * orth
        + w.temporal_consistency * temp
        + w.static_order * static
        + w.dynamic_order * dyn
    )
    return LossTerms(total, prog, mort, los, orth, temp, static, dyn)
