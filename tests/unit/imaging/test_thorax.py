"""White lungs are placed from the thorax outline, flagged, not dropped; what is not a frontal
chest is still refused (issue 22, item 4)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from dipro.vocab import REGIONS
from dipro_fhir.imaging.decode import decode_radiograph
from dipro_fhir.imaging.encode import to_dicom
from dipro_fhir.imaging.evaluate import iou
from dipro_fhir.imaging.events import image_event_from_dataset
from dipro_fhir.imaging.qc import THORAX_CONFIDENCE, check_placement
from dipro_fhir.imaging.qc_measures import measure_film
from dipro_fhir.imaging.regions import GeometricRegionLocator
from dipro_fhir.imaging.thorax import fallback_placement, thorax_outline
from dipro_fhir.synth.radiograph import random_anatomy, render_chest, true_regions

LOCATOR = GeometricRegionLocator()
T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)
SIZE = (256, 256)
_LUNG_REGIONS = [r for r in REGIONS if r not in ("cardiac_silhouette", "mediastinum")]


def _white_lungs(seed: int) -> tuple[np.ndarray, dict[str, dict[str, float]]]:  # type: ignore[type-arg]
    """A film whose two lungs are opacified throughout (ARDS-like), and its severity."""
    findings = ("consolidation", "pleural_effusion", "pulmonary_edema", "pneumonia")
    severity = {f: dict.fromkeys(_LUNG_REGIONS, 0.8) for f in findings}
    anatomy = random_anatomy(np.random.default_rng(seed))
    return render_chest(seed, anatomy, severity, view="AP", size=SIZE), severity


def _dicom(image: np.ndarray):  # type: ignore[no-untyped-def,type-arg]
    return to_dicom(
        image,
        patient_id="p1",
        patient_name="TEST^P1",
        birth_date=None,
        sex="F",
        study_uid="1.2.3",
        series_uid="1.2.3.1",
        instance_uid="1.2.3.1.1",
        acquired=T0,
        view_position="AP",
    )


def _event(image: np.ndarray):  # type: ignore[no-untyped-def,type-arg]
    return image_event_from_dataset(_dicom(image), window_start=T0, crop_size=32, locator=LOCATOR)


@pytest.mark.parametrize("seed", [0, 2, 5])
def test_a_white_lung_film_is_placed_from_its_thorax_outline_not_dropped(seed: int) -> None:
    image, severity = _white_lungs(seed)
    anatomy = random_anatomy(np.random.default_rng(seed))
    boxes = LOCATOR.locate(image)
    refused = check_placement(image, boxes)
    assert not refused.film_ok  # the lung fields are not found: QC refuses the locator's boxes
    placed = fallback_placement(image, boxes, refused)
    assert placed is not None
    found, qc = placed
    assert found.method == "thorax"
    assert qc.film_ok
    assert max(r.confidence for r in qc.regions) <= THORAX_CONFIDENCE
    truth = true_regions(anatomy, severity, view="AP", size=image.shape)
    for lung in ("right_lung", "left_lung"):
        got, want = found.get(lung), truth.get(lung)
        assert got is not None
        assert want is not None
        assert iou(got, want) > 0.7, lung


def test_the_pipeline_uses_a_white_lung_film_and_says_how_it_was_placed() -> None:
    image, _ = _white_lungs(2)
    event, issues = _event(image)
    codes = [i.code for i in issues]
    assert event is not None, codes
    assert "regions-qc-film" not in codes
    assert "regions-from-thorax" in codes
    used = dict(zip(REGIONS, event.region_mask.tolist(), strict=True))
    for region in ("right_lung", "left_lung", "cardiac_silhouette", "mediastinum"):
        assert used[region], region
    # A lower zone or angle left out is one below an edge seen as the diaphragm, and says so.
    failed = " ".join(i.detail for i in issues if i.code == "regions-qc-failed")
    for region, kept in used.items():
        if not kept:
            assert f"{region}: below-dome" in failed, region
    assert "regions-from-thorax" in [code for code, _ in event.qc]


def test_a_clear_film_is_not_placed_from_the_outline() -> None:
    image = render_chest(0, random_anatomy(np.random.default_rng(0)), {})
    event, issues = _event(image)
    assert event is not None
    assert "regions-from-thorax" not in [i.code for i in issues]


def _ellipse() -> np.ndarray:  # type: ignore[type-arg]
    """A bright smooth body against air, with no spine or mediastinum: not a chest."""
    y, x = np.mgrid[0:256, 0:256].astype(np.float64)
    inside = ((x - 128) / 90) ** 2 + ((y - 128) / 120) ** 2 <= 1
    noise = np.random.default_rng(0).normal(0, 0.01, (256, 256))
    return np.clip(0.05 + 0.55 * inside + noise, 0, 1).astype(np.float32)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((256, 256), np.float32),
        np.random.default_rng(0).random((256, 256)).astype(np.float32),
        render_chest(2, random_anatomy(np.random.default_rng(2)), {}, view="LATERAL"),
        np.rot90(_white_lungs(2)[0]).copy(),
    ],
    ids=["blank", "noise", "lateral", "white-lungs-rotated-90"],
)
def test_what_is_not_a_frontal_chest_is_still_refused(image: np.ndarray) -> None:  # type: ignore[type-arg]
    event, issues = _event(image)
    assert event is None
    assert "regions-from-thorax" not in [i.code for i in issues]


def test_a_template_on_a_shape_without_a_spine_is_still_refused() -> None:
    """A bright body outline with no spine or mediastinum in it is not a chest's outline:
    the geometric locator's template on it stays refused."""
    image = _ellipse()
    template = replace(LOCATOR.locate(image), method="template")
    qc = check_placement(image, template)
    assert qc.film_reason == "regions-template"
    assert fallback_placement(image, template, qc) is None
    assert thorax_outline(measure_film(image)) is None


def test_a_white_lung_film_without_outside_air_is_still_refused() -> None:
    """The thorax outline must be seen: cut to the chest, the film keeps its refusal."""
    image, _ = _white_lungs(2)
    h, w = image.shape
    cut = image[int(0.1 * h) : int(0.9 * h), int(0.22 * w) : int(0.78 * w)].copy()
    boxes = LOCATOR.locate(cut)
    qc = check_placement(cut, boxes)
    assert not qc.film_ok
    assert fallback_placement(cut, boxes, qc) is None


def test_the_rendered_film_round_trips_through_dicom() -> None:
    """The tests above feed ``to_dicom`` films; the pipeline decodes them as rendered."""
    image, _ = _white_lungs(2)
    assert decode_radiograph(_dicom(image)).shape == image.shape


@pytest.mark.parametrize("seed", [0, 2, 5])
def test_a_template_on_a_film_cut_at_one_side_is_not_mirrored_across_its_own_centre(
    seed: int,
) -> None:
    """With one side of the body out of the frame, only a midline between measured lung
    fields can stand in for the missing edge; a template's midline is the cut outline's own
    centre, and mirroring across it would take the cut outline for a whole one."""
    image, _ = _white_lungs(seed)
    cut = image[:, : int(0.8 * image.shape[1])].copy()
    boxes = LOCATOR.locate(cut)
    qc = check_placement(cut, boxes)
    assert qc.film_reason == "regions-template"
    assert fallback_placement(cut, boxes, qc) is None


@pytest.mark.parametrize("seed", range(3))
def test_a_thorax_placement_is_checked_against_a_visible_diaphragm(seed: int) -> None:
    """Its base is a prior (or the locator's unchecked one): where the dome is plainly seen,
    a lower zone and angle far below it go as missing (``below-dome``), the film is used.
    On a development film (cb706009) this caught a right lower zone in the liver."""
    anatomy = random_anatomy(np.random.default_rng(seed))
    image, truth = render_chest(seed, anatomy, {}), true_regions(anatomy, {})
    lung = truth.get("left_lung")
    assert lung is not None
    names = ("left_costophrenic_angle", "left_lower_lung_zone")
    drop = 0.3 * (lung[3] - lung[1])
    moved = tuple(
        (b[0], b[1] + drop, b[2], b[3] + drop) if b is not None and r in names else b
        for r, b in zip(REGIONS, truth.boxes, strict=True)
    )
    qc = check_placement(image, replace(truth, boxes=moved, method="thorax"))
    assert qc.film_ok
    assert set(qc.failed) == set(names)
    for region in qc.regions:
        if region.region in names:
            assert region.reasons == ("below-dome",)
    in_place = check_placement(image, replace(truth, method="thorax"))
    assert in_place.failed == ()
    assert max(r.confidence for r in in_place.regions) <= THORAX_CONFIDENCE
