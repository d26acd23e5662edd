"""Multiscale Multimodal Fusion, MMF (reference §2.6; paper §3.4).

Global scale: a Transformer encodes the whole EHR sequence (E_global). Local scale: for each
consecutive CXR interval, time-embedding queries attend to the EHR hours *inside* that interval,
weighted towards its centre (E_local), and the interval's dynamic region features attend to
themselves and to E_local (region-aware attention). The fused region tokens then inform the EHR
sequence (EHR cross-attention, H_global), and one self-attention layer mixes class tokens,
region tokens and H_global.

Every attention here masks padded hours and padded pairs (the paper's code does not, §7.1.8);
an interval without any EHR hour yields zeros instead of NaN (§7.2 "time base"). The global
encoder's positional encoding uses the real hour offsets rather than the row index (§7.1.9);
on the paper's contiguous hourly grid from hour 0 the two are identical.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dipro.masking import MaskedAttention


def encode_hours(hours: torch.Tensor, d_model: int) -> torch.Tensor:
    """Sinusoidal encoding of real-valued hours: float [...] -> float [..., D]."""
    half = torch.arange(0, d_model, 2, dtype=torch.float32, device=hours.device)
    freq = torch.exp(-math.log(10000.0) * half / d_model)  # [D/2]
    angle = hours.float()[..., None] * freq  # [..., D/2]
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)


class GlobalEHREncoder(nn.Module):
    """phi: Linear -> LayerNorm -> Dropout, + time encoding, CLS, one Transformer layer (§2.6a)."""

    def __init__(self, in_dim: int, d_model: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model))
        self.layer = nn.TransformerEncoderLayer(
            d_model, heads, ffn, dropout, batch_first=True, norm_first=False
        )

    def forward(
        self, values: torch.Tensor, hours: torch.Tensor, row_valid: torch.Tensor
    ) -> torch.Tensor:
        """Encode [B, T, in_dim] EHR rows at ``hours`` [B, T]; returns E_global [B, T, D]."""
        x = self.dropout(self.norm(self.embed(values)))
        x = self.dropout(x + encode_hours(hours, x.shape[-1]).to(x.dtype))
        cls = self.cls.expand(x.shape[0], -1, -1).to(x.dtype)
        tokens = torch.cat([cls, x], dim=1)  # [B, 1 + T, D]
        valid = torch.cat([row_valid.new_ones(row_valid.shape[0], 1), row_valid], dim=1)
        out: torch.Tensor = self.layer(tokens, src_key_padding_mask=~valid)
        return out[:, 1:]  # the CLS output is not used (§2.6a); CLS still acts as a key


class IntervalEHREncoder(nn.Module):
    """Local EHR encoding per CXR interval with a centre-focused mask (§2.6b)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.time_mlp = nn.Sequential(
            nn.Linear(3, d_model // 2), nn.GELU(), nn.Linear(d_model // 2, d_model)
        )
        self.attn = MaskedAttention(d_model, heads, dropout)

    def forward(
        self,
        ehr: torch.Tensor,
        hours: torch.Tensor,
        row_valid: torch.Tensor,
        start: torch.Tensor,
        end: torch.Tensor,
        pair_valid: torch.Tensor,
    ) -> torch.Tensor:
        """Return E_local [B, P, T, D].

        Args:
            ehr: E_global, float [B, T, D].
            hours: float [B, T] hour of each EHR row.
            row_valid: bool [B, T].
            start: float [B, P] earlier CXR time t_i.
            end: float [B, P] later CXR time t_i+1.
            pair_valid: bool [B, P].
        """
        b, t, d = ehr.shape
        p = start.shape[1]
        tau = hours[:, None, :]  # [B, 1, T]
        since, until = tau - start[..., None], end[..., None] - tau  # [B, P, T]
        feats = torch.stack([since, until, torch.sigmoid(since * until)], dim=-1)
        queries = self.time_mlp(feats.to(ehr.dtype)).reshape(b * p, t, d)
        inside = (since >= 0) & (until >= 0) & row_valid[:, None, :] & pair_valid[..., None]
        centre = 0.5 * (start + end)
        bias = -(tau - centre[..., None]).abs()  # hours, added to the logits as in the code
        kv = ehr[:, None].expand(-1, p, -1, -1).reshape(b * p, t, d)
        out: torch.Tensor = self.attn(
            queries, kv, kv, inside.reshape(b * p, t), bias.reshape(b * p, t)
        )
        return out.reshape(b, p, t, d)


class RegionAwareAttention(nn.Module):
    """Regions of one interval attend to [regions; E_local]; residual + LayerNorm (§2.6c)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.region_proj = nn.Linear(d_model, 3 * d_model)
        self.ehr_proj = nn.Linear(d_model, 2 * d_model)
        self.attn = MaskedAttention(d_model, heads, dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, regions: torch.Tensor, local_ehr: torch.Tensor, row_valid: torch.Tensor
    ) -> torch.Tensor:
        """regions [M, R, D], local_ehr [M, T, D], row_valid [M, T] -> [M, R, D]."""
        q_r, k_r, v_r = self.region_proj(regions).chunk(3, dim=-1)
        k_e, v_e = self.ehr_proj(local_ehr).chunk(2, dim=-1)
        keys = torch.cat([k_r, k_e], dim=1)
        values = torch.cat([v_r, v_e], dim=1)
        region_valid = row_valid.new_ones(regions.shape[0], regions.shape[1])
        valid = torch.cat([region_valid, row_valid], dim=1)
        fused: torch.Tensor = self.norm(regions + self.attn(q_r, keys, values, valid))
        return fused


class EHRCrossAttention(nn.Module):
    """H_global = LayerNorm(E_global + CrossAttn(E_global, D_global)) (§2.6d)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = MaskedAttention(d_model, heads, dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, ehr: torch.Tensor, regions: torch.Tensor, region_valid: torch.Tensor
    ) -> torch.Tensor:
        """ehr [B, T, D], regions [B, P*R, D], region_valid [B, P*R] -> [B, T, D].

        With no valid pair (0 or 1 CXR) the attention term is zero: the EHR-only path.
        """
        fused: torch.Tensor = self.norm(ehr + self.attn(ehr, regions, regions, region_valid))
        return fused
