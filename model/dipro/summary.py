"""The EHR summary path: a linear map from window statistics to every task's logits.

Not in the paper (off in the paper configs). On EHR-driven tasks a logistic regression on
per-variable summaries of the window (last, mean, lowest, highest value, change, share of
hours observed, and the demographics) was level with the whole network on held-out synthetic
patients (docs/models.md): the attention stack has to rediscover from 48 hourly rows what the
summaries state outright. This path gives the network those summaries directly: its logits
are added to the heads' logits. It starts at zero (the network begins as without it);
``dipro_fhir``'s trainer fits it as a regression after training the rest and stacks the two
(``dipro.stacking``).

The statistics are computed here from the batch, so scoring needs nothing new from the
pipeline. Values are the caller's normalised ones, read only where observed; a variable never
observed in the window gives 0 for every statistic (the normalised mean) and a share of 0,
which tells the layer it is missing.
"""

from __future__ import annotations

from typing import Final

import torch
from torch import nn

#: Statistics per variable, in this order.
STATISTICS: Final[tuple[str, ...]] = ("last", "mean", "min", "max", "change", "observed")


def window_statistics(
    values: torch.Tensor, mask: torch.Tensor, row_mask: torch.Tensor
) -> torch.Tensor:
    """Per-variable statistics of the observation window.

    Args:
        values: float [B, T, V] normalised values (rows in time order).
        mask: bool [B, T, V], True where observed.
        row_mask: bool [B, T], True for real rows.

    Returns:
        float [B, V * len(STATISTICS)], variable-major (``STATISTICS`` per variable).
    """
    observed = mask & row_mask[:, :, None]
    seen = observed.to(values.dtype)
    count = seen.sum(dim=1)  # [B, V]
    any_seen = count > 0
    rows = row_mask.to(values.dtype).sum(dim=1).clamp(min=1.0)[:, None]  # [B, 1]
    zero = values.new_zeros(())
    mean = (values * seen).sum(dim=1) / count.clamp(min=1.0)
    lowest = torch.where(observed, values, values.new_full((), float("inf"))).amin(dim=1)
    highest = torch.where(observed, values, values.new_full((), float("-inf"))).amax(dim=1)
    order = torch.arange(1, values.shape[1] + 1, device=values.device, dtype=values.dtype)
    last_row = (seen * order[None, :, None]).argmax(dim=1, keepdim=True)  # [B, 1, V]
    first_row = (seen * order.flip(0)[None, :, None]).argmax(dim=1, keepdim=True)
    last = values.gather(1, last_row)[:, 0]
    first = values.gather(1, first_row)[:, 0]
    stats = torch.stack(
        [
            torch.where(any_seen, last, zero),
            mean,
            torch.where(any_seen, lowest, zero),
            torch.where(any_seen, highest, zero),
            torch.where(any_seen, last - first, zero),
            count / rows,
        ],
        dim=-1,
    )  # [B, V, S]
    return stats.flatten(1)


class SummaryPath(nn.Module):
    """Linear logits from window statistics and demographics, zero at initialisation."""

    def __init__(self, variables: int, demographics: int, outputs: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(variables * len(STATISTICS) + demographics, outputs)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(
        self,
        values: torch.Tensor,
        mask: torch.Tensor,
        row_mask: torch.Tensor,
        demographics: torch.Tensor,
    ) -> torch.Tensor:
        """float [B, outputs]: the logits this path adds (see the module docstring)."""
        stats = window_statistics(values, mask, row_mask)
        x = torch.cat([stats, demographics.to(stats.dtype)], dim=1)
        out: torch.Tensor = self.linear(self.dropout(x))
        return out
