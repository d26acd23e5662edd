"""Learnable padding for regions that could not be located (reference §1.6, §7.1.6).

The paper's ``LearnableRegionPadding`` holds one learnable image per region ([R, 3, 224, 224],
N(0, 1) init) and puts it in place of every region of a *padded CXR slot*; a region missing
inside a real CXR stays all-zero. Here the same tensor fills every region whose
``region_mask`` is False, inside real CXRs too, so "not located" is a learned input rather than
a black crop. Padded CXR slots never reach the backbone at all (see ``network``), so they need
no filler. The tensor lives in the backbone's input space (3 channels for ImageNet ResNet-50),
which keeps the paper's parameter count.
"""

from __future__ import annotations

import torch
from torch import nn


class LearnableRegionPadding(nn.Module):
    """One learnable crop per region, used where the region is missing."""

    def __init__(self, num_regions: int, channels: int, crop_size: int) -> None:
        super().__init__()
        self.padding = nn.Parameter(torch.randn(num_regions, channels, crop_size, crop_size))

    def forward(self, crops: torch.Tensor, region_mask: torch.Tensor) -> torch.Tensor:
        """Replace missing regions by the learned crop.

        Args:
            crops: float [M, R, C, H, W], C = 1 or the padding's channel count.
            region_mask: bool [M, R], False where the region is missing.

        Returns:
            float [M, R, C', H, W] with C' = the padding's channels.
        """
        pad = self.padding.to(crops.dtype)  # [R, C', H, W]
        if crops.shape[2] != pad.shape[1]:
            crops = crops.expand(-1, -1, pad.shape[1], -1, -1)  # grayscale -> RGB, §1.6
        keep = region_mask[:, :, None, None, None]
        return torch.where(keep, crops, pad.unsqueeze(0))
