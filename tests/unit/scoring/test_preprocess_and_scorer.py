"""Timelines become the network's batch correctly, and a checkpoint turns them into scores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from dipro.checkpoint import save_checkpoint
from dipro.config import DiproConfig
from dipro.network import DiPro
from dipro.vocab import FINDINGS, LOS_BINS, PROGRESSION_CLASSES, VARIABLES
from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.core.timeline import (
    ImageEvent,
    PatientId,
    PatientTimeline,
    ResourceRef,
    RunId,
)
from dipro_fhir.mapping.variables import spec_for
from dipro_fhir.scoring.preprocess import collate, fit_preprocessing, impute_ehr
from dipro_fhir.scoring.scorer import load_model, score_timelines

CROP = 16
AS_OF = datetime(2026, 11, 24, 6, tzinfo=UTC)


def _timeline(seed: int, n_images: int, crop: int = CROP) -> PatientTimeline:
    rng = np.random.default_rng(seed)
    start = AS_OF - timedelta(hours=48)
    mask = rng.random((48, 38)) < 0.2
    values = np.where(mask, rng.normal(80, 10, size=(48, 38)), np.nan).astype(np.float32)
    images = tuple(
        ImageEvent(
            study_uid=f"1.2.{seed}.{j}",
            series_uid=f"1.2.{seed}.{j}.1",
            instance_uid=f"1.2.{seed}.{j}.1.1",
            acquired=start + timedelta(hours=12 * j),
            hours_since_window_start=12.0 * j,
            crops=rng.random((10, 1, crop, crop)).astype(np.float32),
            region_mask=np.ones(10, dtype=bool),
            view_position="AP",
            imaging_study=ResourceRef("ImagingStudy", f"s{seed}{j}"),
        )
        for j in range(n_images)
    )
    demo = np.zeros(17, dtype=np.float32)
    demo[:3] = [60 + seed, np.nan, 70]
    return PatientTimeline(
        patient_id=PatientId(f"p{seed}"),
        encounter_id=None,
        as_of=AS_OF,
        window_start=start,
        ehr_values=values,
        ehr_mask=mask,
        ehr_hours=np.arange(48, dtype=np.float32),
        demographics=demo,
        images=images,
        provenance=(ResourceRef("Observation", f"o{seed}", "1"),),
    )


def test_impute_uses_normal_before_first_value_then_carries_forward() -> None:
    values = np.full((5, 38), np.nan, dtype=np.float32)
    mask = np.zeros((5, 38), dtype=bool)
    hr = VARIABLES.index("heart_rate")
    values[2, hr], mask[2, hr] = 120.0, True
    out = impute_ehr(values, mask)
    assert out[0, hr] == pytest.approx(spec_for("heart_rate").normal)
    assert out[1, hr] == pytest.approx(spec_for("heart_rate").normal)
    assert list(out[2:, hr]) == [120.0, 120.0, 120.0]
    assert np.isfinite(out).all()


def test_collate_pads_short_sequences_and_keeps_most_recent_cxrs() -> None:
    tls = [_timeline(1, 0), _timeline(2, 1), _timeline(3, 5)]
    prep = fit_preprocessing(tls)
    batch = collate(tls, prep, max_cxrs=4, crop_size=CROP)
    assert tuple(batch.cxr_crops.shape) == (3, 4, 10, 1, CROP, CROP)
    assert batch.cxr_mask.tolist() == [[False] * 4, [True] + [False] * 3, [True] * 4]
    # The 4 most recent of 5 images: hours 12, 24, 36, 48.
    assert batch.cxr_hours[2].tolist() == [12.0, 24.0, 36.0, 48.0]
    assert torch.isfinite(batch.ehr_values).all()
    assert torch.isfinite(batch.demographics).all()


def test_collate_refuses_crops_of_another_size() -> None:
    tls = [_timeline(1, 2, crop=8)]
    with pytest.raises(ModelContractError, match="crops have shape"):
        collate(tls, fit_preprocessing(tls), max_cxrs=4, crop_size=CROP)


def test_scorer_emits_every_outcome_and_marks_the_ehr_only_path(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = DiproConfig(crop_size=CROP, d_model=16, heads=2, small_cnn_width=4)
    tls = [_timeline(1, 1), _timeline(2, 3)]
    save_checkpoint(
        DiPro(config),
        tmp_path / "ckpt",
        name="t",
        version="0.0.1",
        preprocessing=fit_preprocessing(tls).to_json(),
    )
    model = load_model(tmp_path / "ckpt", device="cpu")
    scores = score_timelines(model, tls, run_id=RunId("r1"), batch_size=1)
    by_patient = {p: [s for s in scores if s.patient_id == p] for p in ("p1", "p2")}
    one_cxr, three_cxr = by_patient["p1"], by_patient["p2"]
    assert {s.path for s in one_cxr} == {"ehr_only"}
    assert {s.task for s in one_cxr} == {"mortality", "los"}
    assert {s.path for s in three_cxr} == {"pairs"}
    assert len(three_cxr) == 1 + len(LOS_BINS) + len(FINDINGS) * len(PROGRESSION_CLASSES)
    los = [s.probability for s in three_cxr if s.task == "los"]
    assert sum(los) == pytest.approx(1.0, abs=4 * 0.5e-4)  # each rounded to 4 decimals
    assert ResourceRef("ImagingStudy", "s20") in three_cxr[0].basis


def test_scorer_refuses_a_checkpoint_without_preprocessing(tmp_path: Path) -> None:
    config = DiproConfig(crop_size=CROP, d_model=16, heads=2, small_cnn_width=4)
    save_checkpoint(DiPro(config), tmp_path / "ckpt", name="t", version="1")
    with pytest.raises(ModelContractError, match="preprocessing"):
        load_model(tmp_path / "ckpt", device="cpu")
