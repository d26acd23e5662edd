"""Crop the ten region boxes and resize them to the network's input size (reference §1.6).

The paper resizes each crop to 224x224 with NEAREST interpolation and without keeping the
aspect ratio. We keep "no aspect preservation" (the network was trained on stretched crops)
but use bilinear interpolation with antialiasing (torch ``interpolate(antialias=True)``):
crops are usually downsampled several-fold from a full-resolution film, where NEAREST
aliases rib edges and noise. Box edges are rounded outwards to whole pixels. A missing
region is an all-zero crop with ``region_mask`` False, as in the paper.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from dipro_fhir.core.timeline import BoolArray, FloatArray
from dipro_fhir.imaging.boxes import RegionBoxes


def crop_regions(
    image: npt.NDArray[np.floating], boxes: RegionBoxes, size: int = 224
) -> tuple[FloatArray, BoolArray]:
    """Cut and resize every region.

    Args:
        image: float ``[H, W]`` in ``[0, 1]``, the image the boxes were located on.
        boxes: Ten boxes in ``dipro.vocab.REGIONS`` order.
        size: Output side in pixels.

    Returns:
        ``crops`` float32 ``[R, 1, size, size]`` in ``[0, 1]`` and ``region_mask`` bool
        ``[R]`` (False where the box is missing or empty after clipping).
    """
    h, w = image.shape
    crops = np.zeros((len(boxes.boxes), 1, size, size), dtype=np.float32)
    mask = np.zeros(len(boxes.boxes), dtype=np.bool_)
    full = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    for i, box in enumerate(boxes.boxes):
        if box is None:
            continue
        x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
        x1, y1 = min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        patch = full[y0:y1, x0:x1][None, None]  # [1, 1, h, w]
        resized = F.interpolate(
            patch, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        crops[i, 0] = resized[0, 0].clamp_(0.0, 1.0).numpy()
        mask[i] = True
    return crops, mask
