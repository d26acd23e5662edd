"""The geometric locator finds the regions where the synthetic renderer put them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dipro.vocab import REGIONS
from dipro_fhir.imaging.boxes import Box, RegionBoxes
from dipro_fhir.imaging.crops import crop_regions
from dipro_fhir.imaging.decode import decode_radiograph
from dipro_fhir.imaging.regions import GeometricRegionLocator
from dipro_fhir.synth.radiograph import Anatomy, random_anatomy, render_chest, true_regions

LOCATOR = GeometricRegionLocator()
DATA = Path(__file__).parents[2] / "data" / "dicom"


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def _anatomy(seed: int) -> Anatomy:
    return random_anatomy(np.random.default_rng(seed))


@pytest.mark.parametrize("seed", range(12))
def test_located_regions_overlap_the_true_regions(seed: int) -> None:
    anatomy = _anatomy(seed)
    severity = {"pleural_effusion": {"right_costophrenic_angle": 0.5}} if seed % 3 == 0 else {}
    found = LOCATOR.locate(render_chest(seed, anatomy, severity))
    truth = true_regions(anatomy, severity)
    assert found.mask.all()
    for name in REGIONS:
        got, want = found.get(name), truth.get(name)
        assert got is not None
        assert want is not None
        assert _iou(got, want) > 0.5, name


def test_patient_left_lung_and_heart_are_on_the_image_right() -> None:
    found = LOCATOR.locate(render_chest(1, _anatomy(1), {}))
    left, right, heart = (
        found.get("left_lung"),
        found.get("right_lung"),
        found.get("cardiac_silhouette"),
    )
    assert left is not None
    assert right is not None
    assert heart is not None
    assert right[2] <= left[0]
    mid = 0.5 * (right[2] + left[0])
    assert 0.5 * (heart[0] + heart[2]) > mid


def _crop_means(image: np.ndarray, boxes: RegionBoxes) -> dict[str, float]:
    crops, _ = crop_regions(image, boxes, 64)
    return {name: float(crops[i].mean()) for i, name in enumerate(REGIONS)}


@pytest.mark.parametrize("side", ["left", "right"])
def test_effusion_opacity_lands_in_the_costophrenic_crop_of_its_side(side: str) -> None:
    anatomy, other = _anatomy(5), "right" if side == "left" else "left"
    clear = render_chest(5, anatomy, {})
    wet = render_chest(5, anatomy, {"pleural_effusion": {f"{side}_costophrenic_angle": 0.7}})
    before, after = _crop_means(clear, LOCATOR.locate(clear)), _crop_means(wet, LOCATOR.locate(wet))
    gain = after[f"{side}_costophrenic_angle"] - before[f"{side}_costophrenic_angle"]
    assert gain > 0.08
    assert (
        abs(after[f"{other}_costophrenic_angle"] - before[f"{other}_costophrenic_angle"]) < gain / 3
    )


def test_enlarged_heart_widens_the_cardiac_box() -> None:
    anatomy = _anatomy(7)
    normal = LOCATOR.locate(render_chest(7, anatomy, {})).get("cardiac_silhouette")
    big = LOCATOR.locate(
        render_chest(7, anatomy, {"enlarged_cardiac_silhouette": {"cardiac_silhouette": 1.0}})
    ).get("cardiac_silhouette")
    assert normal is not None
    assert big is not None
    assert (big[2] - big[0]) > 1.15 * (normal[2] - normal[0])


def test_consolidation_shows_in_its_lower_zone_crop_only() -> None:
    anatomy = _anatomy(9)
    clear = render_chest(9, anatomy, {})
    sick = render_chest(9, anatomy, {"consolidation": {"right_lower_lung_zone": 0.9}})
    a, b = _crop_means(clear, LOCATOR.locate(clear)), _crop_means(sick, LOCATOR.locate(sick))
    assert b["right_lower_lung_zone"] - a["right_lower_lung_zone"] > 0.05
    assert abs(b["left_lower_lung_zone"] - a["left_lower_lung_zone"]) < 0.01


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((300, 300), np.float32),
        np.random.default_rng(0).random((300, 300)).astype(np.float32),
    ],
    ids=["blank", "noise"],
)
def test_no_thorax_means_every_region_missing(image: np.ndarray) -> None:
    found = LOCATOR.locate(image)
    assert not found.mask.any()
    crops, mask = crop_regions(image, found, 32)
    assert not mask.any()
    assert not crops.any()


def test_lateral_view_is_not_mistaken_for_a_frontal_thorax() -> None:
    found = LOCATOR.locate(render_chest(2, _anatomy(2), {}, view="LATERAL"))
    assert not found.mask.any()


def test_real_cr_gets_all_regions_on_the_correct_sides() -> None:
    image = decode_radiograph(pydicom.dcmread(DATA / "RG1_J2KI.dcm"))
    found = LOCATOR.locate(image)
    assert found.mask.all()
    w = image.shape[1]
    right, left = found.get("right_lung"), found.get("left_lung")
    assert right is not None
    assert left is not None
    assert right[2] < 0.55 * w < left[2]
    assert left[0] > 0.45 * w
    assert right[0] < 0.3 * w


def test_crops_have_the_network_shape_and_range() -> None:
    image = render_chest(4, _anatomy(4), {})
    crops, mask = crop_regions(image, LOCATOR.locate(image), 224)
    assert crops.shape == (10, 1, 224, 224)
    assert crops.dtype == np.float32
    assert mask.dtype == np.bool_
    assert mask.all()
    assert float(crops.min()) >= 0.0
    assert float(crops.max()) <= 1.0
