"""Shapes, masking invariance, the EHR-only path and the PAE reversal of the DiPro network."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dipro import DiPro, DiproBatch, DiproConfig, DiproOutput
from dipro.pae import reverse_labels
from tests.unit.model.conftest import synthetic

TOL = 1e-5


def _outputs(out: DiproOutput) -> list[torch.Tensor]:
    return [t for t in (out.progression, out.mortality, out.los) if t is not None]


def _assert_same(a: DiproOutput, b: DiproOutput) -> None:
    for x, y in zip(_outputs(a), _outputs(b), strict=True):
        torch.testing.assert_close(x, y, atol=TOL, rtol=0)


def _replace(batch: DiproBatch, **changes: torch.Tensor) -> DiproBatch:
    return dataclasses.replace(batch, **changes)


@pytest.mark.parametrize("cxrs", [0, 1, 2, 4])
@pytest.mark.parametrize("hours", [1, 12])
def test_output_shapes_for_any_cxr_count_and_hours(
    tiny_model: DiPro, cxrs: int, hours: int
) -> None:
    batch, _ = synthetic(3, min_cxrs=cxrs, max_cxrs=cxrs)
    batch = batch.select(slice(None))
    batch = _replace(
        batch,
        ehr_values=batch.ehr_values[:, :hours],
        ehr_mask=batch.ehr_mask[:, :hours],
        ehr_hours=batch.ehr_hours[:, :hours],
        ehr_row_mask=torch.ones(3, hours, dtype=torch.bool),
    )
    out = tiny_model(batch)
    assert out.progression is not None
    assert out.progression.shape == (3, 7, 3)
    assert out.mortality is not None
    assert out.mortality.shape == (3,)
    assert out.los is not None
    assert out.los.shape == (3, 4)
    assert all(bool(torch.isfinite(t).all()) for t in _outputs(out))
    assert out.used_pairs.tolist() == [cxrs >= 2] * 3


def test_more_cxrs_than_max_is_refused(tiny_model: DiPro) -> None:
    batch, _ = synthetic(1, min_cxrs=2, max_cxrs=7)
    with pytest.raises(ValueError, match="max_cxrs"):
        tiny_model(batch)


def test_adding_padded_cxr_slots_leaves_outputs_unchanged(tiny_model: DiPro) -> None:
    batch, _ = synthetic(4, min_cxrs=0, max_cxrs=3)
    extra = 2
    b, _, r, c, h, w = batch.cxr_crops.shape
    padded = _replace(
        batch,
        cxr_crops=torch.cat([batch.cxr_crops, torch.rand(b, extra, r, c, h, w)], dim=1),
        region_mask=torch.cat([batch.region_mask, torch.ones(b, extra, r, dtype=torch.bool)], 1),
        cxr_mask=torch.cat([batch.cxr_mask, torch.zeros(b, extra, dtype=torch.bool)], dim=1),
        cxr_hours=torch.cat([batch.cxr_hours, 100 * torch.rand(b, extra)], dim=1),
    )
    _assert_same(tiny_model(batch), tiny_model(padded))


def test_content_of_padded_cxrs_and_missing_regions_is_ignored(tiny_model: DiPro) -> None:
    batch, _ = synthetic(4, min_cxrs=1, max_cxrs=4, missing_region_rate=0.3)  # type: ignore[arg-type]
    hidden = ~(batch.cxr_mask[..., None] & batch.region_mask)  # [B, N, R]
    assert bool(hidden.any())
    noisy = torch.where(
        hidden[..., None, None, None], torch.rand_like(batch.cxr_crops), batch.cxr_crops
    )
    hours = torch.where(batch.cxr_mask, batch.cxr_hours, -50.0)
    _assert_same(tiny_model(batch), tiny_model(_replace(batch, cxr_crops=noisy, cxr_hours=hours)))


def test_adding_padded_hours_leaves_outputs_unchanged(tiny_model: DiPro) -> None:
    batch, _ = synthetic(4, min_cxrs=0, max_cxrs=3)
    b, _, v = batch.ehr_values.shape
    extra = 5
    padded = _replace(
        batch,
        ehr_values=torch.cat([batch.ehr_values, torch.randn(b, extra, v)], dim=1),
        ehr_mask=torch.cat([batch.ehr_mask, torch.ones(b, extra, v, dtype=torch.bool)], dim=1),
        ehr_hours=torch.cat([batch.ehr_hours, torch.rand(b, extra) * 20], dim=1),
        ehr_row_mask=torch.cat([batch.ehr_row_mask, torch.zeros(b, extra, dtype=torch.bool)], 1),
    )
    _assert_same(tiny_model(batch), tiny_model(padded))


def test_a_patient_scores_the_same_alone_and_in_a_batch(tiny_model: DiPro) -> None:
    batch, _ = synthetic(5, min_cxrs=0, max_cxrs=4)
    together = tiny_model(batch)
    for i in range(batch.batch_size):
        alone = tiny_model(batch.select(slice(i, i + 1)))
        for x, y in zip(_outputs(together), _outputs(alone), strict=True):
            torch.testing.assert_close(x[i : i + 1], y, atol=TOL, rtol=0)


def test_interval_without_any_ehr_hour_gives_finite_outputs(tiny_model: DiPro) -> None:
    batch, _ = synthetic(2, min_cxrs=3, max_cxrs=3)
    before_window = torch.tensor([[-40.0, -30.0, -20.0], [-30.0, -25.0, 5.0]])
    out = tiny_model(_replace(batch, cxr_hours=before_window))
    assert all(bool(torch.isfinite(t).all()) for t in _outputs(out))
    assert out.used_pairs.all()


def test_ehr_only_path_ignores_the_single_cxr_pixels(tiny_model: DiPro) -> None:
    batch, _ = synthetic(2, min_cxrs=1, max_cxrs=1)
    other = _replace(batch, cxr_crops=torch.rand_like(batch.cxr_crops))
    _assert_same(tiny_model(batch), tiny_model(other))
    assert not tiny_model(batch).used_pairs.any()


def test_reversed_pair_features_equal_the_features_of_the_swapped_pair(
    tiny_model: DiPro,
) -> None:
    batch, _ = synthetic(3, min_cxrs=2, max_cxrs=2)
    original = tiny_model(batch, with_reversed=True).parts
    swapped_batch = _replace(
        batch,
        cxr_crops=batch.cxr_crops.flip(1).contiguous(),
        region_mask=batch.region_mask.flip(1).contiguous(),
    )
    swapped = tiny_model(swapped_batch, with_reversed=True).parts
    assert original.static_reversed is not None
    assert original.dynamic_reversed is not None
    torch.testing.assert_close(swapped.static, original.static_reversed, atol=TOL, rtol=0)
    torch.testing.assert_close(swapped.dynamic, original.dynamic_reversed, atol=TOL, rtol=0)
    assert not torch.allclose(original.dynamic, original.dynamic_reversed, atol=1e-3)


def test_reversing_labels_swaps_worsened_and_improved_only() -> None:
    labels = torch.tensor([0, 1, 2, 3])
    assert reverse_labels(labels).tolist() == [1, 0, 2, 3]
    assert torch.equal(reverse_labels(reverse_labels(labels)), labels)


def test_chunked_backbone_in_eval_gives_the_same_outputs(tiny_model: DiPro) -> None:
    batch, _ = synthetic(3, min_cxrs=2, max_cxrs=3)
    whole = tiny_model(batch)
    tiny_model.inference_chunk = 7  # 7 crops per backbone call
    _assert_same(whole, tiny_model(batch))


@pytest.mark.parametrize("direct", [True, False])
def test_demographics_reach_the_class_tokens_directly_only_when_configured(
    tiny_config: DiproConfig, direct: bool
) -> None:
    model = DiPro(dataclasses.replace(tiny_config, direct_demographics=direct)).eval()
    with torch.no_grad():
        model.static_fusion.group_embedding.prototypes.zero_()  # the paper's path carries nothing
    batch, _ = synthetic(2)
    older = dataclasses.replace(batch, demographics=batch.demographics + 3.0)
    with torch.no_grad():
        a, b = model(batch).mortality, model(older).mortality
    assert a is not None
    assert b is not None
    assert (not torch.allclose(a, b, atol=1e-6)) is direct
