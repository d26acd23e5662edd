"""Spatiotemporal Disentanglement, STD (reference §2.2-§2.3; paper §3.2).

Region features of two consecutive CXRs are concatenated per region and split by two heads of
the same shape into a *static* part S (anatomy, should not change between the two images) and a
*dynamic* part D (the change itself). An orthogonality loss keeps S and D apart; a temporal
consistency loss keeps S of adjacent pairs alike. Unlike the paper's code, both losses average
over valid (patient, pair, region) triples only (§7.1.3, §7.1.8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dipro.masking import MaskedBatchNorm1d


class RegionFeatureAdapter(nn.Module):
    """Linear(backbone -> D) -> BatchNorm1d -> ReLU -> Dropout (§2.2)."""

    def __init__(self, in_dim: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, d_model)
        self.norm = MaskedBatchNorm1d(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map [M, in_dim] backbone features of real crops to [M, D]."""
        out: torch.Tensor = self.dropout(torch.relu(self.norm(self.linear(x))))
        return out


class ProjectionHead(nn.Module):
    """Linear(2D -> 4D) -> GELU -> Linear(4D -> D) -> BatchNorm1d -> Dropout (f_s or f_d)."""

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)
        self.norm = MaskedBatchNorm1d(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, pair: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Project [B, P, R, 2D] pair vectors to [B, P, R, D]; ``valid`` is bool [B, P, R]."""
        hidden = self.fc2(nn.functional.gelu(self.fc1(pair)))
        out: torch.Tensor = self.dropout(self.norm(hidden, valid))
        return out


@dataclass(frozen=True, slots=True)
class Disentangled:
    """Static and dynamic features of each consecutive pair.

    Attributes:
        static: float [B, P, R, D], S = f_s([F_t || F_t+1]).
        dynamic: float [B, P, R, D], D = f_d([F_t || F_t+1]).
        static_reversed: float [B, P, R, D] or None, S~ = f_s([F_t+1 || F_t]) (PAE, §2.4).
        dynamic_reversed: float [B, P, R, D] or None, D~ = f_d([F_t+1 || F_t]).
    """

    static: torch.Tensor
    dynamic: torch.Tensor
    static_reversed: torch.Tensor | None
    dynamic_reversed: torch.Tensor | None


class SpatiotemporalDisentanglement(nn.Module):
    """The two STD heads f_s and f_d, applied to forward and (optionally) reversed pairs."""

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.static_head = ProjectionHead(d_model, dropout)
        self.dynamic_head = ProjectionHead(d_model, dropout)

    def forward(
        self, features: torch.Tensor, pair_valid: torch.Tensor, with_reversed: bool
    ) -> Disentangled:
        """Disentangle consecutive pairs.

        Args:
            features: float [B, N, R, D] region features F.
            pair_valid: bool [B, P], P = N - 1.
            with_reversed: Also compute the reversed-pair features for PAE.
        """
        earlier, later = features[:, :-1], features[:, 1:]  # [B, P, R, D]
        valid = pair_valid[:, :, None].expand(-1, -1, features.shape[2])  # [B, P, R]
        forward_pair = torch.cat([earlier, later], dim=-1)  # [B, P, R, 2D]
        static = self.static_head(forward_pair, valid)
        dynamic = self.dynamic_head(forward_pair, valid)
        if not with_reversed:
            return Disentangled(static, dynamic, None, None)
        # §7.1.1: the reversed input is the swapped concatenation [F_t+1 || F_t], not the
        # official code's channel interleave.
        reversed_pair = torch.cat([later, earlier], dim=-1)
        return Disentangled(
            static,
            dynamic,
            self.static_head(reversed_pair, valid),
            self.dynamic_head(reversed_pair, valid),
        )


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over True entries of ``valid`` (same shape); 0 when none."""
    weight = valid.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def orthogonality_loss(parts: Disentangled, pair_valid: torch.Tensor) -> torch.Tensor:
    """L_orth: mean over valid (b, p, r) of cos(S, D)^2 (§2.3)."""
    cos = nn.functional.cosine_similarity(parts.static, parts.dynamic, dim=-1)  # [B, P, R]
    valid = pair_valid[:, :, None].expand_as(cos)
    return _masked_mean(cos.pow(2), valid)


def temporal_consistency_loss(parts: Disentangled, pair_valid: torch.Tensor) -> torch.Tensor:
    """L_temp: mean over adjacent valid pairs and regions of ||S_i - S_i+1||^2 / D (§2.3).

    The /D keeps the code's element-wise-MSE scale, which the paper's λ values were tuned for.
    """
    if parts.static.shape[1] < 2:
        return parts.static.sum() * 0.0
    diff = (parts.static[:, :-1] - parts.static[:, 1:]).pow(2).mean(dim=-1)  # [B, P-1, R]
    valid = (pair_valid[:, :-1] & pair_valid[:, 1:])[:, :, None].expand_as(diff)
    return _masked_mean(diff, valid)
