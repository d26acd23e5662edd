"""Inference: probabilities per task from a ``DiproBatch``.

Runs under ``torch.inference_mode`` on the model's device (CUDA when the caller put it there),
with bf16 (or fp16 where bf16 is unsupported) autocast on CUDA and plain fp32 on CPU (bf16
autocast on this CPU was measured slower, ``python -m dipro.bench``). Crops go to the backbone
in ``channels_last`` layout (``prepare_for_inference``), from pinned host memory on CUDA.
Results come back as float32 CPU tensors so callers never touch devices.

Two steps can run apart: ``encode_crops`` turns whole CXRs into pooled backbone features
(what a feature cache stores), and ``score(..., region_features=...)`` scores a batch from
such features without running the backbone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from dipro.batch import DiproBatch
from dipro.network import DiPro

if TYPE_CHECKING:
    from dipro.calibration import Calibration


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """Probabilities for one batch (CPU, float32).

    Attributes:
        progression: [B, K=7, 3] softmax over (worsened, improved, no change) or None.
        mortality: [B] probability of in-hospital death or None.
        los: [B, 4] softmax over ``vocab.LOS_BINS`` or None.
        used_pairs: bool [B]; False = fewer than two CXRs, scored by the EHR-only path.
    """

    progression: torch.Tensor | None
    mortality: torch.Tensor | None
    los: torch.Tensor | None
    used_pairs: torch.Tensor


def select_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA that supports it, fp16 on other CUDA, None (fp32) on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _precision(
    device: torch.device, mixed_precision: bool, precision: str | None
) -> torch.dtype | None:
    """The autocast dtype: ``precision`` ("fp32" / "bf16") when given, else the default."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return autocast_dtype(device) if mixed_precision else None


def _model_device(model: DiPro) -> torch.device:
    return next(model.parameters()).device


def prepare_for_inference(model: DiPro) -> DiPro:
    """Eval mode, convolution weights in ``channels_last`` (NHWC) layout; returns ``model``."""
    model.eval()
    model.backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device``; through pinned host memory (asynchronous DMA) on CUDA."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def encode_crops(
    model: DiPro,
    crops: torch.Tensor,
    region_mask: torch.Tensor,
    *,
    mixed_precision: bool = True,
    precision: str | None = None,
) -> torch.Tensor:
    """Pooled backbone features of whole CXRs (the network's ``encode_crops``), on any device.

    Args:
        model: The network, on its device.
        crops: float32 [M, R, C, H, W] in [0, 1] (M CXRs, any patients).
        region_mask: bool [M, R].
        mixed_precision: Autocast (bf16) on CUDA; ignored on CPU.
        precision: ``"fp32"`` or ``"bf16"`` to force one on any device (benchmarks).

    Returns:
        float32 [M, R, F] on the CPU.
    """
    device = _model_device(model)
    with _inference(model, device, _precision(device, mixed_precision, precision)):
        m, r, c, h, w = crops.shape
        flat = _to_device(crops, device).reshape(m * r, c, h, w)
        nhwc = flat.contiguous(memory_format=torch.channels_last).reshape(m, r, c, h, w)
        out = model.encode_crops(nhwc, _to_device(region_mask, device))
    return out.float().cpu()


def score(
    model: DiPro,
    batch: DiproBatch,
    *,
    mixed_precision: bool = True,
    region_features: torch.Tensor | None = None,
    precision: str | None = None,
    calibration: Calibration | None = None,
) -> ScoreResult:
    """Score one batch with ``model`` in eval mode.

    Args:
        model: The network, already on its device (see ``select_device``).
        batch: Inputs on any device; moved to the model's.
        mixed_precision: Use autocast on CUDA (ignored on CPU).
        region_features: float [B, N, R, F] pooled backbone features of the batch's CXRs
            (``encode_crops``); the backbone then does not run and the crops are not read.
        precision: ``"fp32"`` or ``"bf16"`` to force one on any device (benchmarks).
        calibration: The checkpoint's calibration maps (``dipro.calibration``), applied to
            the probabilities of each task that has one.

    Returns:
        Probabilities per configured task and the path flag.
    """
    device = _model_device(model)
    with _inference(model, device, _precision(device, mixed_precision, precision)):
        features = None if region_features is None else _to_device(region_features, device)
        out = model(batch.to(device), with_reversed=False, region_features=features)

    def to_cpu(x: torch.Tensor | None, fn: str) -> torch.Tensor | None:
        if x is None:
            return None
        x = x.float()
        x = torch.sigmoid(x) if fn == "sigmoid" else torch.softmax(x, dim=-1)
        return x.cpu()

    result = ScoreResult(
        progression=to_cpu(out.progression, "softmax"),
        mortality=to_cpu(out.mortality, "sigmoid"),
        los=to_cpu(out.los, "softmax"),
        used_pairs=out.used_pairs.cpu(),
    )
    return result if calibration is None else calibrate(result, calibration)


def calibrate(result: ScoreResult, calibration: Calibration) -> ScoreResult:
    """``result`` with each task's calibration map applied (tasks without one unchanged)."""
    progression = result.progression
    if progression is not None and calibration.progression is not None:
        progression = torch.stack(
            [s.apply(progression[:, k]) for k, s in enumerate(calibration.progression)], dim=1
        )
    mortality, los = result.mortality, result.los
    if mortality is not None and calibration.mortality is not None:
        mortality = calibration.mortality.apply(mortality)
    if los is not None and calibration.los is not None:
        los = calibration.los.apply(los)
    return ScoreResult(progression, mortality, los, result.used_pairs)


@contextmanager
def _inference(model: DiPro, device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Eval mode, ``inference_mode`` and autocast to ``dtype`` (``None``: fp32); the model's
    training flag is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            yield
    finally:
        model.train(was_training)


def score_batches(
    model: DiPro, batches: Iterable[DiproBatch], *, mixed_precision: bool = True
) -> Iterator[ScoreResult]:
    """Score each batch in turn (lazily), e.g. chunks read from a staging area.

    Args:
        model: The network, already on its device.
        batches: Any iterable of batches.
        mixed_precision: Use autocast on CUDA.
    """
    for batch in batches:
        yield score(model, batch, mixed_precision=mixed_precision)
