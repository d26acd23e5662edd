"""The typed inputs and targets of the DiPro network.

One frozen object per batch replaces the research code's positional 7-tuple (reference §1.8).
Every shape, dtype and unit is stated here and checked in ``__post_init__``, so a caller that
builds a wrong tensor fails at the boundary, not deep inside attention.

Axis letters: B patients, T EHR hour rows, V EHR variables, Dm demographic columns, N CXR slots,
R anatomical regions, C image channels, H x W crop pixels, P = N - 1 consecutive CXR pairs,
K findings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dipro.vocab import PROGRESSION_IGNORE


def _check(name: str, tensor: torch.Tensor, dtype: torch.dtype, ndim: int) -> None:
    """Raise ``ValueError`` unless ``tensor`` has ``dtype`` and ``ndim`` dimensions."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype != dtype:
        raise ValueError(f"{name} must be {dtype}, got {tensor.dtype}")
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(tensor.shape)}")


def _check_shape(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")


@dataclass(frozen=True, slots=True)
class DiproBatch:
    """A batch of patients for the DiPro network.

    Attributes:
        ehr_values: float32 [B, T, V]. Hourly EHR values, already normalised (z-scored) by
            the caller; 0 where unobserved is fine. V = 38 in ``vocab.VARIABLES`` order.
        ehr_mask: bool [B, T, V]. True where the value was observed in that hour.
        ehr_hours: float32 [B, T]. Hours since the observation-window start of each row
            (real hour offsets, e.g. 0, 1, ..., 47; need not be contiguous).
        ehr_row_mask: bool [B, T]. True = a real hour row, False = padding.
        demographics: float32 [B, Dm]. Dm = 17 in ``vocab.DEMOGRAPHIC_COLUMNS`` order.
        cxr_crops: float32 [B, N, R, C, H, W] in [0, 1]. Region crops of each CXR, R = 10 in
            ``vocab.REGIONS`` order, C = 1 (grayscale) or 3. N may be 0.
        region_mask: bool [B, N, R]. False = the region could not be located in that CXR.
        cxr_mask: bool [B, N]. True = a real CXR. Real CXRs are left-aligned (no real slot
            after a padded one) and sorted by acquisition time.
        cxr_hours: float32 [B, N]. Acquisition time in hours since the window start (may be
            negative for CXRs taken before the window).
    """

    ehr_values: torch.Tensor
    ehr_mask: torch.Tensor
    ehr_hours: torch.Tensor
    ehr_row_mask: torch.Tensor
    demographics: torch.Tensor
    cxr_crops: torch.Tensor
    region_mask: torch.Tensor
    cxr_mask: torch.Tensor
    cxr_hours: torch.Tensor

    def __post_init__(self) -> None:
        _check("ehr_values", self.ehr_values, torch.float32, 3)
        b, t, v = self.ehr_values.shape
        _check("ehr_mask", self.ehr_mask, torch.bool, 3)
        _check_shape("ehr_mask", self.ehr_mask, (b, t, v))
        _check("ehr_hours", self.ehr_hours, torch.float32, 2)
        _check_shape("ehr_hours", self.ehr_hours, (b, t))
        _check("ehr_row_mask", self.ehr_row_mask, torch.bool, 2)
        _check_shape("ehr_row_mask", self.ehr_row_mask, (b, t))
        _check("demographics", self.demographics, torch.float32, 2)
        if self.demographics.shape[0] != b:
            raise ValueError("demographics must have batch size B")
        _check("cxr_crops", self.cxr_crops, torch.float32, 6)
        _, n, r, _, _, _ = self.cxr_crops.shape
        if self.cxr_crops.shape[0] != b:
            raise ValueError("cxr_crops must have batch size B")
        _check("region_mask", self.region_mask, torch.bool, 3)
        _check_shape("region_mask", self.region_mask, (b, n, r))
        _check("cxr_mask", self.cxr_mask, torch.bool, 2)
        _check_shape("cxr_mask", self.cxr_mask, (b, n))
        _check("cxr_hours", self.cxr_hours, torch.float32, 2)
        _check_shape("cxr_hours", self.cxr_hours, (b, n))
        self._check_cxr_order()

    def _check_cxr_order(self) -> None:
        """Real CXRs must be left-aligned and sorted by time (the pairs are consecutive)."""
        if self.cxr_mask.shape[1] < 2:
            return
        if bool((~self.cxr_mask[:, :-1] & self.cxr_mask[:, 1:]).any()):
            raise ValueError("cxr_mask must be left-aligned: a real CXR follows a padded slot")
        both = self.cxr_mask[:, :-1] & self.cxr_mask[:, 1:]
        if bool((both & (self.cxr_hours[:, 1:] < self.cxr_hours[:, :-1])).any()):
            raise ValueError("real CXRs must be sorted by cxr_hours")

    @property
    def batch_size(self) -> int:
        """Number of patients B."""
        return int(self.ehr_values.shape[0])

    def select(self, index: torch.Tensor | slice) -> DiproBatch:
        """Return the patients at ``index`` (a slice or an int64 / bool index on B).

        Args:
            index: Which patients to keep.
        """
        return DiproBatch(*(getattr(self, f)[index] for f in self.__slots__))

    def to(self, device: torch.device | str) -> DiproBatch:
        """Return a copy with every tensor on ``device`` (non-blocking where possible).

        Args:
            device: Target device, e.g. ``"cuda"``.
        """
        return DiproBatch(*(getattr(self, f).to(device, non_blocking=True) for f in self.__slots__))


@dataclass(frozen=True, slots=True)
class DiproTargets:
    """Training targets for a ``DiproBatch``.

    Attributes:
        progression: int64 [B, K=7]; 0 worsened, 1 improved, 2 no change, 3 ignore
            (``vocab.PROGRESSION_CLASSES``), for the most recent valid CXR pair.
        mortality: float32 [B]; 1.0 = in-hospital death.
        los: int64 [B]; bin index in ``vocab.LOS_BINS``, -1 = unknown (ignored).
        region_progression: optional int64 [B, P, R, K] region-level labels for the PAE loss
            (reference §3.1), P = N - 1 pairs of the batch, 3 = ignore.
    """

    progression: torch.Tensor
    mortality: torch.Tensor
    los: torch.Tensor
    region_progression: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _check("progression", self.progression, torch.int64, 2)
        b = self.progression.shape[0]
        _check("mortality", self.mortality, torch.float32, 1)
        _check_shape("mortality", self.mortality, (b,))
        _check("los", self.los, torch.int64, 1)
        _check_shape("los", self.los, (b,))
        if bool(((self.progression < 0) | (self.progression > PROGRESSION_IGNORE)).any()):
            raise ValueError("progression labels must be in 0..3")
        if self.region_progression is not None:
            _check("region_progression", self.region_progression, torch.int64, 4)
            if self.region_progression.shape[0] != b:
                raise ValueError("region_progression must have batch size B")

    def select(self, index: torch.Tensor | slice) -> DiproTargets:
        """Return the targets of the patients at ``index``.

        Args:
            index: Which patients to keep.
        """
        region = self.region_progression
        return DiproTargets(
            self.progression[index],
            self.mortality[index],
            self.los[index],
            None if region is None else region[index],
        )

    def to(self, device: torch.device | str) -> DiproTargets:
        """Return a copy with every tensor on ``device``.

        Args:
            device: Target device.
        """
        region = self.region_progression
        return DiproTargets(
            self.progression.to(device),
            self.mortality.to(device),
            self.los.to(device),
            None if region is None else region.to(device),
        )
