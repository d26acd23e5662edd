"""Tensor-level synthetic cohorts where the answer is in the *change* between CXRs.

Each patient has a strongly individual "anatomy" per region (a smooth random field, static across
that patient's CXRs) and a lesion blob per region whose intensity is a severity level. Between
consecutive CXRs the severity of each region worsens, improves or stays; finding k lives in
region k (regions 7..9 change too, as distractors). The progression label of finding k is the
direction of change in region k over the most recent pair, and EHR variable k drifts with the
same sign inside that interval (a weaker, second signal). Absolute severity is uninformative:
it starts anywhere in a wide range. So a model that compares CXRs (DiPro) can solve the task,
and one that sees only the last CXR cannot (``keep_last_cxr_only``). Mortality and length of
stay are simple functions of the final severity and an EHR level, so every head trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dipro.batch import DiproBatch, DiproTargets
from dipro.vocab import DEMOGRAPHIC_COLUMNS, FINDINGS, REGIONS, VARIABLES


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """Parameters of a synthetic cohort.

    Attributes:
        patients: Number of patients B.
        min_cxrs: Fewest CXRs per patient (0 or 1 exercises the EHR-only path).
        max_cxrs: Most CXRs per patient (N of the batch).
        hours: EHR rows T of the batch (patients have 3/4 T .. T real rows).
        crop_size: Crop side H = W.
        change: Severity step of a worsened / improved region.
        anatomy: Standard deviation of the per-patient anatomy field.
        ehr_slope: EHR drift per hour of the finding's variable in the last interval.
        missing_region_rate: Probability that a region is not located.
        ignore_rate: Probability that a finding's progression label is 3.
    """

    patients: int = 64
    min_cxrs: int = 2
    max_cxrs: int = 4
    hours: int = 32
    crop_size: int = 16
    change: float = 0.5
    anatomy: float = 0.25
    ehr_slope: float = 0.06
    missing_region_rate: float = 0.03
    ignore_rate: float = 0.1


def _smooth_fields(count: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """[count, size, size] smooth random fields with unit standard deviation."""
    coarse = torch.randn(count, 1, 4, 4, generator=gen)
    field = torch.nn.functional.interpolate(
        coarse, size=(size, size), mode="bilinear", align_corners=False
    )[:, 0]
    return field / field.flatten(1).std(dim=1).clamp(min=1e-6)[:, None, None]


def _blobs(regions: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """[R, size, size] one Gaussian lesion template per region (fixed across patients)."""
    centres = 0.3 + 0.4 * torch.rand(regions, 2, generator=gen)
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    dist = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    return torch.exp(-dist / (2 * 0.2**2))


def _cxr_times(counts: torch.Tensor, n: int, hours: int, gen: torch.Generator) -> torch.Tensor:
    """[B, N] sorted acquisition hours; the last real CXR falls in the last quarter window."""
    b = counts.shape[0]
    last = hours * 0.75 + hours * 0.25 * torch.rand(b, generator=gen) - 1
    gaps = 6.0 + 6.0 * torch.rand(b, n, generator=gen)
    times = torch.zeros(b, n)
    for i in range(b):
        c = int(counts[i])
        if c:
            back = torch.cat([torch.zeros(1), gaps[i, : c - 1].flip(0).cumsum(0)]).flip(0)
            times[i, :c] = last[i] - back
    return times


def make_synthetic(spec: SyntheticSpec, seed: int) -> tuple[DiproBatch, DiproTargets]:
    """Generate one padded batch holding the whole cohort (deterministic for ``seed``).

    Args:
        spec: Cohort parameters.
        seed: Seed of the generator.

    Returns:
        Inputs and targets for ``spec.patients`` patients; slice with ``select``.
    """
    gen = torch.Generator().manual_seed(seed)
    b, s, t = spec.patients, spec.crop_size, spec.hours
    n = max(spec.max_cxrs, 2)  # generate at least one pair's worth, cut to max_cxrs at the end
    r, k = len(REGIONS), len(FINDINGS)
    counts = torch.randint(spec.min_cxrs, spec.max_cxrs + 1, (b,), generator=gen)
    cxr_mask = torch.arange(n)[None, :] < counts[:, None]  # [B, N]
    cxr_hours = _cxr_times(counts, n, t, gen)
    # Severity path: start anywhere, then one of (worsened, improved, no change) per step.
    step_class = torch.randint(0, 3, (b, n - 1, r), generator=gen)  # [B, P, R]
    delta = torch.tensor([spec.change, -spec.change, 0.0])[step_class]
    delta = delta + 0.03 * torch.randn(delta.shape, generator=gen)
    start = 1.5 * torch.rand(b, 1, r, generator=gen)
    severity = torch.cat([start, start + delta.cumsum(dim=1)], dim=1)[:, :n]  # [B, N, R]
    # Regions differ in typical brightness (lung fields dark, heart and mediastinum bright).
    base = torch.linspace(0.25, 0.55, r)[None, None, :, None, None]
    anatomy = _smooth_fields(b * r, s, gen).reshape(b, 1, r, s, s) * spec.anatomy + base
    blobs = _blobs(r, s, gen)  # [R, S, S]
    gain = 1.0 + 0.03 * torch.randn(b, n, 1, 1, 1, generator=gen)
    image = anatomy * gain + 0.5 * severity[..., None, None] * blobs
    image = image + 0.02 * torch.randn(image.shape, generator=gen)
    region_mask = (torch.rand(b, n, r, generator=gen) >= spec.missing_region_rate) & cxr_mask[
        ..., None
    ]
    crops = torch.where(region_mask[..., None, None], image.clamp(0, 1), 0.0)[:, :, :, None]
    # Labels: direction of change of region k over the most recent pair.
    last_pair = (counts - 2).clamp(min=0)
    last_class = step_class[torch.arange(b), last_pair.clamp(max=step_class.shape[1] - 1)]
    progression = last_class[:, :k].clone()  # [B, K]
    ignore = torch.rand(b, k, generator=gen) < spec.ignore_rate
    progression[ignore | (counts < 2)[:, None]] = 3
    region_labels = torch.full((b, n - 1, r, k), 3, dtype=torch.int64)
    for finding in range(k):
        region_labels[:, :, finding, finding] = step_class[:, :, finding]
    region_labels[~cxr_mask[:, 1:]] = 3
    ehr = _make_ehr(spec, cxr_hours, counts, last_class, gen)
    final = severity[torch.arange(b), (counts - 1).clamp(min=0)].mean(dim=1)  # [B]
    mortality = (final + 0.3 * ehr[0][:, :, 10].mean(dim=1) > 0.9).float()
    los = torch.bucketize(ehr[0][:, :, 20].mean(dim=1), torch.tensor([-0.3, 0.0, 0.3]))
    demographics = torch.randn(b, len(DEMOGRAPHIC_COLUMNS), generator=gen)
    keep = spec.max_cxrs
    batch = DiproBatch(
        ehr[0],
        ehr[1],
        ehr[2],
        ehr[3],
        demographics,
        crops[:, :keep].contiguous(),
        region_mask[:, :keep],
        cxr_mask[:, :keep],
        cxr_hours[:, :keep],
    )
    pairs = max(keep - 1, 0)
    targets = DiproTargets(progression.long(), mortality, los.long(), region_labels[:, :pairs])
    return batch, targets


def _make_ehr(
    spec: SyntheticSpec,
    cxr_hours: torch.Tensor,
    counts: torch.Tensor,
    last_class: torch.Tensor,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """EHR values, mask, hours and row mask; variable k drifts with finding k's last change."""
    b, t, v = spec.patients, spec.hours, len(VARIABLES)
    k = len(FINDINGS)
    hours = torch.arange(t, dtype=torch.float32).expand(b, t).clone()
    real_rows = torch.randint(3 * t // 4, t + 1, (b,), generator=gen)
    row_mask = torch.arange(t)[None, :] < real_rows[:, None]
    values = 0.5 * torch.randn(b, t, v, generator=gen) + torch.randn(b, 1, v, generator=gen)
    idx = torch.arange(b)
    prev = cxr_hours[idx, (counts - 2).clamp(min=0)]
    last = cxr_hours[idx, (counts - 1).clamp(min=0)]
    elapsed = (hours - prev[:, None]).clamp(min=0) * (hours <= last[:, None])  # [B, T]
    elapsed = elapsed + (hours > last[:, None]) * (last - prev).clamp(min=0)[:, None]
    sign = torch.tensor([1.0, -1.0, 0.0])[last_class[:, :k]] * (counts >= 2)[:, None]  # [B, K]
    values[:, :, :k] += spec.ehr_slope * elapsed[:, :, None] * sign[:, None, :]
    observed = (torch.rand(b, t, v, generator=gen) < 0.8) & row_mask[..., None]
    values = torch.where(observed, values, 0.0)
    return values, observed, hours, row_mask


def keep_last_cxr_only(batch: DiproBatch) -> DiproBatch:
    """Ablation input: every real CXR slot shows the patient's last CXR (times kept).

    The network then sees one image (and the full EHR) but no change between images.
    """
    b = batch.batch_size
    last = (batch.cxr_mask.sum(dim=1) - 1).clamp(min=0)
    idx = torch.arange(b)
    crops = batch.cxr_crops[idx, last][:, None].expand_as(batch.cxr_crops)
    regions = batch.region_mask[idx, last][:, None].expand_as(batch.region_mask)
    keep = batch.cxr_mask
    return DiproBatch(
        batch.ehr_values,
        batch.ehr_mask,
        batch.ehr_hours,
        batch.ehr_row_mask,
        batch.demographics,
        torch.where(keep[..., None, None, None, None], crops, 0.0).contiguous(),
        regions & keep[..., None],
        batch.cxr_mask,
        batch.cxr_hours,
    )


def split_into_batches(
    batch: DiproBatch, targets: DiproTargets, size: int
) -> list[tuple[DiproBatch, DiproTargets]]:
    """Cut a cohort into consecutive mini-batches of ``size`` patients."""
    return [
        (batch.select(slice(i, i + size)), targets.select(slice(i, i + size)))
        for i in range(0, batch.batch_size, size)
    ]
