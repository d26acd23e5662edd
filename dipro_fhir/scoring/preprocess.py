"""From mapped timelines to the network's batch: imputation, z-scoring, padding.

The paper's preprocessing (reference §1.4-§1.5) imputes each variable's "normal" value
before its first observation, forward-fills, and z-scores with cohort statistics; continuous
demographics are mean-imputed and z-scored. We keep that, with one fix the reference asks
for (§7.1.11): the statistics are fitted on the *training* timelines only
(:func:`fit_preprocessing`) and travel inside the checkpoint's model card, so scoring uses
exactly what training used. Forward-filling stays inside the 48-hour window: nothing from
before the window or after the as-of time is carried in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from dipro.batch import DiproBatch
from dipro.vocab import REGIONS, VARIABLES
from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.core.timeline import FloatArray, PatientTimeline
from dipro_fhir.mapping.variables import spec_for

#: Continuous demographic columns (age, height, weight) lead the 17-column vector (§1.5).
N_CONTINUOUS_DEMOGRAPHICS = 3
_NORMALS = np.array([spec_for(name).normal for name in VARIABLES], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """Normalisation statistics fitted on training timelines (stored in the model card)."""

    ehr_mean: tuple[float, ...]
    ehr_std: tuple[float, ...]
    demo_mean: tuple[float, ...]
    demo_std: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for ``ModelCard.preprocessing``."""
        return {"kind": "dipro-fhir/zscore/1", **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        """Read the form written by :meth:`to_json`.

        Raises:
            ModelContractError: The card has no (or a different kind of) preprocessing.
        """
        if data.get("kind") != "dipro-fhir/zscore/1":
            raise ModelContractError(
                "the checkpoint's model card has no dipro-fhir preprocessing record; "
                "train it with `dipro-fhir train`"
            )
        prep = cls(
            ehr_mean=tuple(data["ehr_mean"]),
            ehr_std=tuple(data["ehr_std"]),
            demo_mean=tuple(data["demo_mean"]),
            demo_std=tuple(data["demo_std"]),
        )
        if len(prep.ehr_mean) != len(VARIABLES) or len(prep.ehr_std) != len(VARIABLES):
            raise ModelContractError("preprocessing statistics do not cover the 38 variables")
        return prep


def fit_preprocessing(timelines: Iterable[PatientTimeline]) -> Preprocessing:
    """Fit z-score statistics over all observed values, streaming (one pass, O(V) memory)."""
    n = np.zeros(len(VARIABLES))
    total = np.zeros(len(VARIABLES))
    squares = np.zeros(len(VARIABLES))
    demo: list[list[float]] = [[] for _ in range(N_CONTINUOUS_DEMOGRAPHICS)]
    for tl in timelines:
        values = np.where(tl.ehr_mask, tl.ehr_values, 0.0).astype(np.float64)
        n += tl.ehr_mask.sum(axis=0)
        total += values.sum(axis=0)
        squares += (values**2).sum(axis=0)
        for i in range(N_CONTINUOUS_DEMOGRAPHICS):
            if np.isfinite(tl.demographics[i]):
                demo[i].append(float(tl.demographics[i]))
    mean = np.where(n > 0, total / np.maximum(n, 1), _NORMALS)
    var = np.where(n > 1, squares / np.maximum(n, 1) - mean**2, 1.0)
    std = np.sqrt(np.maximum(var, 1e-6))
    demo_mean = [float(np.mean(d)) if d else 0.0 for d in demo]
    demo_std = [float(np.std(d)) if len(d) > 1 and np.std(d) > 0 else 1.0 for d in demo]
    return Preprocessing(
        tuple(mean.tolist()), tuple(std.tolist()), tuple(demo_mean), tuple(demo_std)
    )


def impute_ehr(values: FloatArray, mask: np.ndarray[Any, Any]) -> FloatArray:
    """Forward-fill each variable within the window; before its first value, the normal value.

    Args:
        values: float32 ``[T, V]`` with NaN where unobserved.
        mask: bool ``[T, V]``, True where observed.
    """
    filled = np.where(mask, values, np.nan).astype(np.float64)
    filled = np.vstack([_NORMALS[None, :], filled])
    # Index of the last observed row at or before each row; row 0 is the normal-value row.
    rows = np.where(~np.isnan(filled), np.arange(filled.shape[0])[:, None], 0)
    np.maximum.accumulate(rows, axis=0, out=rows)
    out = np.take_along_axis(filled, rows, axis=0)[1:]
    return out.astype(np.float32)


def normalise_ehr(tl: PatientTimeline, prep: Preprocessing) -> FloatArray:
    """Imputed, z-scored EHR values ``[T, V]`` of one timeline."""
    mean = np.asarray(prep.ehr_mean, dtype=np.float32)
    std = np.asarray(prep.ehr_std, dtype=np.float32)
    return (impute_ehr(tl.ehr_values, tl.ehr_mask) - mean) / std


def normalise_demographics(tl: PatientTimeline, prep: Preprocessing) -> FloatArray:
    """The 17 demographic columns with continuous ones mean-imputed and z-scored."""
    out = tl.demographics.astype(np.float32).copy()
    k = N_CONTINUOUS_DEMOGRAPHICS
    mean = np.asarray(prep.demo_mean, dtype=np.float32)
    std = np.asarray(prep.demo_std, dtype=np.float32)
    cont = np.where(np.isfinite(out[:k]), out[:k], mean)
    out[:k] = (cont - mean) / std
    return out


def collate(
    timelines: Sequence[PatientTimeline],
    prep: Preprocessing,
    *,
    max_cxrs: int,
    crop_size: int,
    with_crops: bool = True,
) -> DiproBatch:
    """Stack timelines into one padded :class:`~dipro.batch.DiproBatch`.

    Each patient keeps its ``max_cxrs`` most recent CXRs (oldest first); shorter sequences
    are padded and masked. All timelines must share the EHR window length. With
    ``with_crops=False`` the crops are left empty (``H = W = 0``): the caller scores from
    region features (:mod:`dipro_fhir.scoring.features`).

    Raises:
        ModelContractError: Crops of another size than the model's, or mixed window lengths.
    """
    if not timelines:
        raise ModelContractError("cannot build a batch of zero patients")
    t = timelines[0].ehr_values.shape[0]
    if any(tl.ehr_values.shape != (t, len(VARIABLES)) for tl in timelines):
        raise ModelContractError("timelines in one batch must share the EHR window shape")
    images = [tl.images[-max_cxrs:] for tl in timelines]
    n = max((len(x) for x in images), default=0)
    b, r = len(timelines), len(REGIONS)
    side = crop_size if with_crops else 0
    crops = np.zeros((b, n, r, 1, side, side), dtype=np.float32)
    region_mask = np.zeros((b, n, r), dtype=bool)
    cxr_mask = np.zeros((b, n), dtype=bool)
    cxr_hours = np.zeros((b, n), dtype=np.float32)
    for i, seq in enumerate(images):
        for j, img in enumerate(seq):
            if with_crops and img.crops.shape != (r, 1, crop_size, crop_size):
                raise ModelContractError(
                    f"CXR crops have shape {img.crops.shape}; the model expects "
                    f"{(r, 1, crop_size, crop_size)}: set the imaging crop size from the card"
                )
            if with_crops:
                crops[i, j] = img.crops
            region_mask[i, j] = img.region_mask
            cxr_mask[i, j] = True
            cxr_hours[i, j] = img.hours_since_window_start
    return DiproBatch(
        ehr_values=torch.from_numpy(np.stack([normalise_ehr(tl, prep) for tl in timelines])),
        ehr_mask=torch.from_numpy(np.stack([tl.ehr_mask for tl in timelines])),
        ehr_hours=torch.from_numpy(np.stack([tl.ehr_hours for tl in timelines])),
        ehr_row_mask=torch.ones((b, t), dtype=torch.bool),
        demographics=torch.from_numpy(
            np.stack([normalise_demographics(tl, prep) for tl in timelines])
        ),
        cxr_crops=torch.from_numpy(crops),
        region_mask=torch.from_numpy(region_mask),
        cxr_mask=torch.from_numpy(cxr_mask),
        cxr_hours=torch.from_numpy(cxr_hours),
    )
