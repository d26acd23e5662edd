"""Region features of a chunk's CXRs: reused from the shared cache, or computed once.

Two halves of one idea (DESIGN.md "Cost": a night costs what is new):

- :class:`CachedImages` is the feature cache as extraction sees it: a frontal instance that
  is cached under this preprocessing version and backbone digest becomes an event with its
  cached features, region mask, boxes and QC verdict, without a WADO retrieval or a decode.
- :func:`region_features` gives scoring the features of every CXR it will use: cached ones as
  they are, the others through the backbone in batches of CXRs *across patients*, and writes
  those to the cache.

Features are float16 in the cache, and scoring always uses the float16-rounded values, with
or without a cache, so a cached night scores exactly like an uncached one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import torch

from dipro.scoring import encode_crops
from dipro.vocab import REGIONS
from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.core.timeline import (
    Float16Array,
    ImageEvent,
    MappingIssue,
    PatientTimeline,
    RegionFeatures,
    ResourceRef,
)
from dipro_fhir.imaging.events import FRAME
from dipro_fhir.imaging.frontal import ImageCandidate
from dipro_fhir.store.feature_cache import CachedFeatures, FeatureCache, FeatureKey


class CachedImages:
    """:class:`~dipro_fhir.imaging.events.FeatureLookup` over the shared feature cache.

    Args:
        cache: The shared cache.
        weights_digest: Digest of the scoring checkpoint's backbone
            (:func:`dipro.checkpoint.read_backbone_digest`).
    """

    def __init__(self, cache: FeatureCache, weights_digest: str) -> None:
        self._cache = cache
        self._digest = weights_digest
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    def cached_event(
        self,
        candidate: ImageCandidate,
        preprocessing: str,
        window_start: datetime,
        imaging_study_ref: ResourceRef | None,
    ) -> tuple[ImageEvent | None, list[MappingIssue]]:
        """The event of a cached instance, or ``None`` (a miss, or a corrupt entry)."""
        if candidate.acquired is None:  # the full header will say why; read it as usual
            return None, []
        key = FeatureKey(candidate.instance_uid, FRAME, preprocessing, self._digest)
        found = self._cache.get(key)
        resource = f"instance/{candidate.instance_uid}"
        if found.corrupt is not None:
            self.corrupt += 1
            detail = f"feature cache entry unusable ({found.corrupt}); recomputed"
            return None, [MappingIssue("feature-cache-corrupt", resource, detail)]
        value = found.value
        if value is None:
            self.misses += 1
            return None, []
        self.hits += 1
        r = len(REGIONS)
        event = ImageEvent(
            study_uid=candidate.study_uid,
            series_uid=candidate.series_uid,
            instance_uid=candidate.instance_uid,
            acquired=candidate.acquired,
            hours_since_window_start=(candidate.acquired - window_start).total_seconds() / 3600.0,
            crops=np.zeros((r, 1, 0, 0), dtype=np.float32),
            region_mask=value.region_mask,
            view_position=candidate.view_position,
            imaging_study=imaging_study_ref,
            features=RegionFeatures(value.features, self._digest),
            boxes=value.boxes,
            qc=value.qc,
            preprocessing=preprocessing,
        )
        return event, [MappingIssue(code, resource, detail) for code, detail in value.qc]


@dataclass
class FeatureStats:
    """What :func:`region_features` did in a chunk (counts and backbone seconds)."""

    cxrs_cached: int = 0
    cxrs_computed: int = 0
    crops_computed: int = 0
    backbone_s: float = 0.0
    computed_instances: list[str] = field(default_factory=list)  # SOP Instance UIDs


def _needed(timelines: Sequence[PatientTimeline], max_cxrs: int) -> Iterator[ImageEvent]:
    for tl in timelines:
        yield from tl.images[-max_cxrs:]


def region_features(
    network: torch.nn.Module,
    timelines: Sequence[PatientTimeline],
    *,
    max_cxrs: int,
    crop_size: int,
    weights_digest: str,
    cache: FeatureCache | None = None,
    cxrs_per_batch: int = 32,
    stats: FeatureStats | None = None,
) -> dict[str, Float16Array]:
    """float16 ``[R, F]`` features of every CXR scoring will use, by SOP Instance UID.

    Args:
        network: The DiPro network on its device.
        timelines: The chunk's timelines.
        max_cxrs: The model's sequence length (only the most recent CXRs are used).
        crop_size: The model's crop size.
        weights_digest: Digest of ``network``'s backbone and padding weights.
        cache: Where computed features are written (``None``: nowhere).
        cxrs_per_batch: CXRs per backbone call, from any patients.
        stats: Adds up counts and backbone time, when given.

    Raises:
        ModelContractError: Crops of another size, or cached features of another backbone.
    """
    stats = stats if stats is not None else FeatureStats()
    out: dict[str, Float16Array] = {}
    todo: list[ImageEvent] = []
    for img in _needed(timelines, max_cxrs):
        if img.features is not None:
            if img.features.weights_digest != weights_digest:
                raise ModelContractError(
                    "staged CXR features were computed with another backbone than the "
                    "checkpoint's: extract the chunk again"
                )
            out[img.instance_uid] = img.features.values
            stats.cxrs_cached += 1
        elif img.instance_uid not in out:
            shape = (len(REGIONS), 1, crop_size, crop_size)
            if img.crops.shape != shape:
                raise ModelContractError(
                    f"CXR crops have shape {img.crops.shape}; the model expects {shape}: set the "
                    "imaging crop size from the card"
                )
            out[img.instance_uid] = np.empty(0, dtype=np.float16)  # placeholder, no repeats
            todo.append(img)
    for start in range(0, len(todo), cxrs_per_batch):
        group = todo[start : start + cxrs_per_batch]
        started = time.perf_counter()
        crops = torch.from_numpy(np.stack([img.crops for img in group]))
        mask = torch.from_numpy(np.stack([img.region_mask for img in group]))
        pooled = encode_crops(network, crops, mask).numpy().astype(np.float16)  # type: ignore[arg-type]
        stats.backbone_s += time.perf_counter() - started
        stats.cxrs_computed += len(group)
        stats.crops_computed += len(group) * len(REGIONS)
        for img, values in zip(group, pooled, strict=True):
            out[img.instance_uid] = values
            stats.computed_instances.append(img.instance_uid)
        if cache is not None:
            cache.put_many([(_key(img, weights_digest), _value(img, out)) for img in group])
    return out


def _key(img: ImageEvent, weights_digest: str) -> FeatureKey:
    return FeatureKey(img.instance_uid, FRAME, img.preprocessing, weights_digest)


def _value(img: ImageEvent, features: dict[str, Float16Array]) -> CachedFeatures:
    boxes = img.boxes
    if boxes is None:
        boxes = np.full((len(REGIONS), 4), np.nan, dtype=np.float32)
    return CachedFeatures(features[img.instance_uid], boxes, img.region_mask, img.qc)


def stack_features(
    group: Sequence[PatientTimeline], features: dict[str, Float16Array], max_cxrs: int
) -> torch.Tensor:
    """float32 ``[B, N, R, F]`` for a batch collated from ``group`` (zeros in padded slots)."""
    images = [tl.images[-max_cxrs:] for tl in group]
    n = max((len(x) for x in images), default=0)
    width = next((v.shape[-1] for v in features.values() if v.size), 0)
    out = np.zeros((len(group), n, len(REGIONS), width), dtype=np.float32)
    for i, seq in enumerate(images):
        for j, img in enumerate(seq):
            out[i, j] = features[img.instance_uid]
    return torch.from_numpy(out)
