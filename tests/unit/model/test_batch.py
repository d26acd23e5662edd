"""DiproBatch / DiproTargets check shapes, dtypes and CXR order at the boundary."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dipro import DiproBatch, DiproTargets
from tests.unit.model.conftest import synthetic


def _fields(batch: DiproBatch) -> dict[str, torch.Tensor]:
    return {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}


def test_wrong_dtype_is_refused_with_the_field_name() -> None:
    batch, _ = synthetic(2)
    fields = _fields(batch)
    fields["ehr_values"] = fields["ehr_values"].double()
    with pytest.raises(ValueError, match="ehr_values"):
        DiproBatch(**fields)


def test_mismatched_shape_is_refused() -> None:
    batch, _ = synthetic(2)
    fields = _fields(batch)
    fields["cxr_hours"] = fields["cxr_hours"][:, :1]
    with pytest.raises(ValueError, match="cxr_hours"):
        DiproBatch(**fields)


def test_real_cxr_after_padding_is_refused() -> None:
    batch, _ = synthetic(2, min_cxrs=2, max_cxrs=3)
    fields = _fields(batch)
    fields["cxr_mask"] = torch.tensor([[True, False, True], [True, True, False]])
    with pytest.raises(ValueError, match="left-aligned"):
        DiproBatch(**fields)


def test_unsorted_cxr_times_are_refused() -> None:
    batch, _ = synthetic(1, min_cxrs=2, max_cxrs=2)
    fields = _fields(batch)
    fields["cxr_hours"] = torch.tensor([[5.0, 1.0]])
    with pytest.raises(ValueError, match="sorted"):
        DiproBatch(**fields)


def test_progression_label_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.\.3"):
        DiproTargets(torch.full((1, 7), 4), torch.zeros(1), torch.zeros(1, dtype=torch.int64))


def test_select_keeps_the_chosen_patients() -> None:
    batch, targets = synthetic(4)
    part = batch.select(slice(1, 3))
    assert part.batch_size == 2
    assert torch.equal(part.cxr_crops, batch.cxr_crops[1:3])
    assert torch.equal(targets.select(slice(1, 3)).los, targets.los[1:3])
