"""Attention and batch normalisation that respect padding masks.

The paper's code masks padded EHR rows only in the global EHR encoder and padded pairs only in
the final fusion layer (reference §7.1.8), so padding changes real patients' outputs. These two
building blocks make every masked element invisible: attention never attends to a masked key,
and a query with no valid key at all returns zeros instead of NaN (the all -inf softmax row that
§7.1 "time base" warns about); batch normalisation computes its training statistics over valid
elements only.
"""

from __future__ import annotations

import torch
from torch import nn


class MaskedAttention(nn.Module):
    """``nn.MultiheadAttention`` (batch first) with key validity and an empty-row guard."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_valid: torch.Tensor,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend ``query`` [M, Q, D] to ``key``/``value`` [M, K, D].

        Args:
            query: float [M, Q, D].
            key: float [M, K, D].
            value: float [M, K, D].
            key_valid: bool [M, K]; False keys get no weight.
            bias: optional float [M, K] additive logit bias, the same for every query row
                (finite where ``key_valid``).

        Returns:
            float [M, Q, D]; rows of a sample with no valid key are zero.
        """
        has_key = key_valid.any(dim=1)  # [M]
        safe_valid = key_valid | ~has_key[:, None]  # all-masked rows: compute, then zero
        heads = self.attn.num_heads
        logits_bias = torch.zeros(key_valid.shape, dtype=query.dtype, device=query.device)
        if bias is not None:
            logits_bias = torch.where(safe_valid, bias.to(query.dtype), logits_bias)
        logits_bias = logits_bias.masked_fill(~safe_valid, float("-inf"))
        mask = logits_bias[:, None, :].expand(-1, query.shape[1], -1)  # [M, Q, K]
        mask = mask.repeat_interleave(heads, dim=0)  # [M * heads, Q, K]
        out: torch.Tensor = self.attn(query, key, value, attn_mask=mask, need_weights=False)[0]
        return out * has_key[:, None, None].to(out.dtype)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` over the last axis whose batch statistics skip masked rows.

    Parameter and buffer names equal ``nn.BatchNorm1d``'s, so parameter counts match the
    paper's layers (reference §2.2, §2.3).
    """

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Normalise ``x`` [..., D]; ``valid`` [...] bool marks rows that count.

        Args:
            x: float [..., D].
            valid: bool [...] or None (all valid).

        Returns:
            float [..., D]; masked rows are normalised with running (eval) or the valid rows'
            (train) statistics and must be ignored downstream.
        """
        flat = x.reshape(-1, x.shape[-1])
        if valid is None:
            return super().forward(flat).reshape(x.shape)
        keep = valid.reshape(-1)
        if not self.training or int(keep.sum()) < 2:
            if self.training:  # too few rows for batch statistics: use running ones
                return nn.functional.batch_norm(
                    flat,
                    self.running_mean,
                    self.running_var,
                    self.weight,
                    self.bias,
                    False,
                    0.0,
                    self.eps,
                ).reshape(x.shape)
            return super().forward(flat).reshape(x.shape)
        out = flat.clone()
        out[keep] = super().forward(flat[keep]).to(out.dtype)
        return out.reshape(x.shape)
