"""The atlas region locator (issue 11): its parts on synthetic films, and a leave-patient-out
regression on the 67 annotated development films with thresholds from the measured figures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dipro.vocab import REGIONS
from dipro_fhir.cli import main
from dipro_fhir.imaging.atlas import (
    SHIPPED_ATLAS,
    AtlasRegionLocator,
    RegionAtlas,
    content,
)
from dipro_fhir.imaging.boxes import Box, RegionBoxes
from dipro_fhir.imaging.evaluate import evaluate_folder, iou, load_coco, load_patients
from dipro_fhir.imaging.locators import load_locator
from dipro_fhir.imaging.qc import check_placement
from dipro_fhir.synth.radiograph import random_anatomy, render_chest, true_regions

REPO = Path(__file__).resolve().parents[3]
FILMS = REPO.parent / "shared" / "data" / "cxr-hannover-dev" / "png"
TRUTH = REPO / "tests" / "data" / "regions"
COCO = TRUTH / "hannover_regions.coco.json"


def _synthetic(seed: int, size: int = 160) -> tuple[Any, RegionBoxes]:
    anatomy = random_anatomy(np.random.default_rng(seed))
    image = render_chest(seed, anatomy, {}, view="PA", size=(size, size))
    return image, true_regions(anatomy, view="PA", size=(size, size))


def _atlas(seeds: range) -> RegionAtlas:
    films = []
    for seed in seeds:
        image, boxes = _synthetic(seed)
        named = {r: b for r, b in zip(REGIONS, boxes.boxes, strict=True) if b is not None}
        films.append((f"s{seed}", f"p{seed % 3}", image, named))
    return RegionAtlas.from_films(films, size=48, note="synthetic")


def _iou(got: Box | None, want: Box | None) -> float:
    assert got is not None
    assert want is not None
    return iou(got, want)


def test_content_cuts_flat_bands_and_keeps_a_film_without_them() -> None:
    image, _ = _synthetic(1, 200)
    padded = np.zeros((260, 200), dtype=np.float32)
    padded[:200] = image  # a black band under the film, as a collimator leaves
    x0, y0, x1, y1 = content(padded)
    assert (x0, x1) == (0, 200)
    assert y0 == 0
    assert 195 <= y1 <= 205
    assert content(image) == (0, 0, 200, 200)


def test_an_atlas_saves_loads_and_leaves_a_patient_out(tmp_path: Path) -> None:
    atlas = _atlas(range(6))
    path = tmp_path / "a.npz"
    atlas.save(path)
    back = RegionAtlas.load(path)
    assert len(back) == 6
    assert back.size == 48
    assert back.note == "synthetic"
    assert back.patients == atlas.patients
    assert back.names == atlas.names
    assert np.allclose(back.boxes.numpy(), atlas.boxes.numpy())
    assert np.abs(back.thumbs.numpy() - atlas.thumbs.numpy()).max() <= 0.5 / 255 + 1e-6
    assert back.fine is not None
    assert atlas.fine is not None
    assert back.fine.shape == (6, 1, 128, 128)
    assert np.abs(back.fine.numpy() - atlas.fine.numpy()).max() <= 0.5 / 255 + 1e-6
    without = back.without("p0")
    assert len(without) == 4
    assert "p0" not in without.patients
    assert without.fine is not None
    assert without.fine.shape[0] == 4


def test_an_atlas_without_fine_thumbnails_still_places_regions(tmp_path: Path) -> None:
    path = tmp_path / "old.npz"
    replace(_atlas(range(2, 8)), fine=None).save(path)
    old = RegionAtlas.load(path)
    assert old.fine is None
    boxes = AtlasRegionLocator(old).locate(_synthetic(40)[0])
    assert boxes.method == "atlas"
    assert all(b is not None for b in boxes.boxes)


def _stretched_bases(seed: int, stretch: float) -> tuple[RegionAtlas, Any, list[Any]]:
    """An atlas of one synthetic film, and that film with everything below mid-lung
    stretched vertically (a chest no axis-aligned map fits), with its true boxes."""
    image, truth = _synthetic(seed)
    size, mid = image.shape[0], int(0.55 * image.shape[0])
    rows = np.arange(size)
    source = np.where(rows < mid, rows, mid + (rows - mid) / stretch).clip(0, size - 1)
    film = image[np.round(source).astype(int)]

    def move(y: float) -> float:
        return y if y < mid else min(float(size), mid + (y - mid) * stretch)

    moved = [None if b is None else (b[0], move(b[1]), b[2], move(b[3])) for b in truth.boxes]
    named = {r: b for r, b in zip(REGIONS, truth.boxes, strict=True) if b is not None}
    return RegionAtlas.from_films([("a", "p", image, named)], size=48), film, moved


@pytest.mark.parametrize(("seed", "stretch"), [(4, 0.85), (7, 1.15), (7, 0.85)])
def test_the_base_refinement_follows_bases_a_whole_film_map_cannot_fit(
    seed: int, stretch: float
) -> None:
    atlas, film, truth = _stretched_bases(seed, stretch)
    bases = [
        REGIONS.index(f"{side}_{part}")
        for side in ("left", "right")
        for part in ("costophrenic_angle", "lower_lung_zone")
    ]

    def base_iou(found: RegionBoxes) -> float:
        return float(np.mean([_iou(found.boxes[i], truth[i]) for i in bases]))

    # Angle boxes as placed, not widened to hold the recess (hold_recess: its own test below).
    exact = (0.0, 0.0)
    whole_film = base_iou(
        AtlasRegionLocator(replace(atlas, fine=None), top_k=1, recess_margin=exact).locate(film)
    )
    refined = base_iou(AtlasRegionLocator(atlas, top_k=1, recess_margin=exact).locate(film))
    assert refined > whole_film
    assert refined > 0.88


def test_a_film_is_placed_from_the_atlas_with_agreement_per_region(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    _atlas(range(2, 12)).save(path)
    locator = load_locator(str(path))
    assert isinstance(locator, AtlasRegionLocator)
    image, truth = _synthetic(40)
    boxes = locator.locate(image)
    assert boxes.method == "atlas"
    assert boxes.confidence is not None
    assert boxes.match is not None
    assert boxes.match > 0.6
    assert all(0.0 <= c <= 1.0 for c in boxes.confidence)
    lungs = [REGIONS.index("right_lung"), REGIONS.index("left_lung")]
    for i in lungs:
        assert _iou(boxes.boxes[i], truth.boxes[i]) > 0.6, REGIONS[i]


def test_a_film_like_no_atlas_film_gets_no_regions(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    _atlas(range(2, 8)).save(path)
    noise = np.random.default_rng(0).random((160, 160)).astype(np.float32)
    boxes = AtlasRegionLocator.load(path).locate(noise)
    assert boxes.method == "none"
    assert not any(boxes.boxes)
    assert not check_placement(noise, boxes).film_ok


def test_quality_control_fails_a_region_the_atlas_films_disagree_on() -> None:
    image, truth = _synthetic(3)
    sure = replace(truth, method="atlas", confidence=(0.9,) * len(REGIONS))
    assert "right_hilar_structures" not in check_placement(image, sure).failed
    doubt = list(sure.confidence or ())
    doubt[REGIONS.index("right_hilar_structures")] = 0.1
    qc = check_placement(image, replace(sure, confidence=tuple(doubt)))
    verdict = qc.regions[REGIONS.index("right_hilar_structures")]
    assert "locator-disagreement" in verdict.reasons
    assert not verdict.ok
    with pytest.raises(ValueError, match="confidences"):
        replace(truth, confidence=(0.5,))


def test_train_locator_builds_an_atlas_the_regions_command_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "films"
    images.mkdir()
    coco: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
    coco["categories"] = [{"id": i + 1, "name": r} for i, r in enumerate(REGIONS)]
    for n in range(4):
        image, truth = _synthetic(20 + n)
        Image.fromarray((image * 255).astype(np.uint8)).save(images / f"f{n}.png")
        coco["images"].append({"id": n, "file_name": f"f{n}.png", "patient_id": f"p{n % 2}"})
        for i, b in enumerate(truth.boxes):
            assert b is not None
            coco["annotations"].append(
                {
                    "id": 10 * n + i,
                    "image_id": n,
                    "category_id": i + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                }
            )
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    out = tmp_path / "atlas"
    argv = [
        "train-locator",
        "--kind",
        "atlas",
        "--coco",
        str(tmp_path / "coco.json"),
        "--images",
        str(images),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert "atlas of 4 films of 2 patients" in capsys.readouterr().out
    assert len(RegionAtlas.load(out / "region_atlas.npz")) == 4
    argv = [
        "regions",
        str(images),
        "--truth",
        str(tmp_path / "coco.json"),
        "--locator",
        str(out / "region_atlas.npz"),
        "--out",
        str(tmp_path / "ev"),
    ]
    assert main(argv) == 0
    records = json.loads((tmp_path / "ev" / "regions.json").read_text())["films"]
    assert len(records) == 4
    assert all(r["left_out_patient"] for r in records)  # never its own patient's films
    assert all(r["method"] == "atlas" for r in records)


# --- the development films ------------------------------------------------------------------

# Measured 2026-12-07, leave-patient-out (`dipro-fhir regions <films> --truth <coco>
# --locator atlas`, thorax fit, bases refined, angles widened to hold the recess): mean IoU of
# placed boxes, films usable and with all ten regions kept. The angles' IoU fell from
# 0.395/0.461 when they were widened (issue 23: the annotated recess lies on the annotated
# box's edge, and the wider box holds it on 69-72 % of the films instead of 28-45 %).
MEASURED_IOU = {
    "left_lung": 0.758,
    "right_lung": 0.765,
    "left_lower_lung_zone": 0.625,
    "right_lower_lung_zone": 0.623,
    "left_hilar_structures": 0.545,
    "right_hilar_structures": 0.552,
    "left_costophrenic_angle": 0.371,
    "right_costophrenic_angle": 0.420,
    "cardiac_silhouette": 0.683,
    "mediastinum": 0.651,
}
MEASURED_USABLE = 61
MEASURED_ALL_TEN = 53
# By-eye wrong regions (hannover_verdicts.json, "atlas") left unflagged by quality control:
# 0 (the two white-out films are not used: 563118e4 its lungs fail, 93fd0adb its thorax
# matches no atlas thorax; 5f001e0b's left angle over the soft tissue at the film edge fails
# angle-at-frame-edge).
MEASURED_WRONG_UNFLAGGED = 0


needs_films = pytest.mark.skipif(not FILMS.is_dir(), reason=f"the Hannover set is not at {FILMS}")


@pytest.fixture(scope="module")
def development() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ev = evaluate_folder(
        FILMS, AtlasRegionLocator.load(SHIPPED_ATLAS), None, load_coco(COCO), load_patients(COCO)
    )
    return ev.summary(), ev.records


@needs_films
def test_atlas_iou_and_kept_films_do_not_regress(
    development: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    summary, records = development
    assert summary["films"] == 67
    assert all(r["left_out_patient"] for r in records)
    for region in REGIONS:
        assert summary["mean_iou"][region] >= MEASURED_IOU[region] - 0.03, region
    assert summary["films_usable"] >= MEASURED_USABLE - 2
    assert summary["films_all_ten_kept"] >= MEASURED_ALL_TEN - 2


@needs_films
def test_atlas_wrong_boxes_seen_by_eye_are_flagged(
    development: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, records = development
    verdicts = json.loads((TRUTH / "hannover_verdicts.json").read_text())["films"]
    by_id = {Path(r["file"]).stem: r for r in records}
    unflagged = [
        (film["image_id"], region)
        for film in verdicts
        for record in [by_id[film["image_id"]]]
        if record["qc"]["film_ok"]
        for region in film["atlas"]["wrong_regions"]
        if record["boxes"][region] is not None and region not in record["qc"]["failed"]
    ]
    assert len(unflagged) <= MEASURED_WRONG_UNFLAGGED, unflagged


# Measured with scripts/regions_base_offset.py (leave-patient-out, issue 23): the median
# base offset (annotated lung base - placed lung base, in annotated lung heights) and the
# share of angle boxes holding the recess (the annotated lung box's lower lateral corner);
# before the thorax fit and hold_recess: -0.006/+0.001 and 28 %/45 % (right/left).
MEASURED_RECESS_HELD = {"right": 0.69, "left": 0.72}
MAX_BASE_OFFSET = 0.03


@needs_films
def test_lung_bases_are_unbiased_and_angle_boxes_hold_the_recess(
    development: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, records = development
    truth = load_coco(COCO)
    for side in ("right", "left"):
        offsets, held = [], []
        for record in records:
            want = truth.get(Path(record["file"]).stem, {})
            lung, angle = (
                record["boxes"][f"{side}_lung"],
                record["boxes"][f"{side}_costophrenic_angle"],
            )
            if set(want) < set(REGIONS) or lung is None:
                continue
            annotated = want[f"{side}_lung"]
            offsets.append((annotated[3] - lung[3]) / (annotated[3] - annotated[1]))
            x = annotated[0] if side == "right" else annotated[2]
            held.append(
                angle is not None
                and angle[0] <= x <= angle[2]
                and angle[1] <= annotated[3] <= angle[3]
            )
        assert len(offsets) == 64
        assert abs(float(np.median(offsets))) <= MAX_BASE_OFFSET, side
        assert np.mean(held) >= MEASURED_RECESS_HELD[side] - 0.08, side


# The recesses of the NEMA PA film (tests/data/dicom), read off by eye on a 50 px grid: the
# lowest lateral points of the right and left lung. Its abdomen fills a quarter of the film;
# the whole-film fit put the right lung box's base 0.15 lung heights above the recess.
NEMA_RECESS = {"right": (115.0, 1545.0), "left": (1650.0, 1555.0)}


def test_an_adult_pa_films_lung_bases_reach_the_recesses_in_spite_of_its_abdomen() -> None:
    import pydicom

    from dipro_fhir.imaging.decode import decode_radiograph

    image = decode_radiograph(pydicom.dcmread(REPO / "tests" / "data" / "dicom" / "RG1_J2KR.dcm"))
    boxes = AtlasRegionLocator.load(SHIPPED_ATLAS).locate(image)
    assert check_placement(image, boxes).film_ok
    for side, (x, y) in NEMA_RECESS.items():
        lung, angle = boxes.get(f"{side}_lung"), boxes.get(f"{side}_costophrenic_angle")
        assert lung is not None
        assert angle is not None
        assert abs(lung[3] - y) <= 0.05 * (lung[3] - lung[1]), side
        assert angle[0] <= x <= angle[2], side
        assert angle[1] <= y <= angle[3], side


def test_images_that_are_no_frontal_chest_film_get_no_usable_placement() -> None:
    locator = AtlasRegionLocator.load(SHIPPED_ATLAS)
    film, _ = _synthetic(7, 256)
    ramp = np.linspace(0.0, 1.0, 300, dtype=np.float32)
    cases = {
        "horizontal ramp": np.tile(ramp, (300, 1)),
        "vertical ramp": np.tile(ramp[:, None], (1, 300)),
        "uniform grey": np.full((300, 300), 0.5, dtype=np.float32),
        "noise": np.random.default_rng(1).random((300, 300)).astype(np.float32),
        "upside down": np.ascontiguousarray(film[::-1]),
        "turned sideways": np.ascontiguousarray(np.rot90(film)),
    }
    for name, image in cases.items():
        qc = check_placement(image, locator.locate(image))
        assert not qc.film_ok, name
