"""The locator seam (DIPRO_IMAGING__LOCATOR) and the ``regions`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageColor

from dipro.vocab import REGIONS
from dipro_fhir.cli import main
from dipro_fhir.core.errors import ConfigError, ModelContractError
from dipro_fhir.core.settings import SYNTHETIC_LOCATOR, Settings, embedded_settings
from dipro_fhir.imaging.atlas import AtlasRegionLocator
from dipro_fhir.imaging.boxes import Box, RegionBoxes
from dipro_fhir.imaging.evaluate import evaluate_folder
from dipro_fhir.imaging.locators import (
    OnnxLocator,
    TorchScriptLocator,
    boxes_from_output,
    load_locator,
)
from dipro_fhir.imaging.overlay import COLOURS, TRUTH_COLOUR, closeups
from dipro_fhir.imaging.regions import GeometricRegionLocator
from dipro_fhir.synth.radiograph import random_anatomy, render_chest, true_regions

HANNOVER_FILM = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "data"
    / "cxr-hannover-dev"
    / "png"
    / "00870a9c.png"
)


class FixedBoxes(torch.nn.Module):
    """A 'model' that always answers the same ten fractional boxes (contract test)."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size = 64
        rows = [[0.1 + 0.01 * i, 0.2, 0.5, 0.8] for i in range(10)]
        rows[3] = [0.4, 0.4, 0.4, 0.4]  # degenerate: missing
        self.register_buffer("out", torch.tensor([rows], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (1, 64, 64)
        return self.out.expand(x.shape[0], -1, -1)


def factory() -> GeometricRegionLocator:
    """A ``module:factory`` for the seam test."""
    return GeometricRegionLocator(target_px=128)


def test_built_in_and_factory_names() -> None:
    assert isinstance(load_locator("geometric"), GeometricRegionLocator)
    found = load_locator("tests.unit.imaging.test_locators:factory")
    assert isinstance(found, GeometricRegionLocator)
    assert found.target_px == 128
    assert isinstance(load_locator("atlas"), AtlasRegionLocator)
    with pytest.raises(ConfigError, match="expected atlas, geometric"):
        load_locator("nonsense")
    with pytest.raises(ConfigError, match="cannot import"):
        load_locator("no.such.module:factory")
    with pytest.raises(ConfigError, match="no such model file"):
        load_locator("/nowhere/model.pt")


def test_the_default_is_the_atlas_and_the_synthetic_world_pins_geometric(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DIPRO_IMAGING__LOCATOR", raising=False)
    assert Settings().imaging.locator == "atlas"
    assert isinstance(load_locator(Settings().imaging.locator), AtlasRegionLocator)
    assert embedded_settings(tmp_path).imaging.locator == SYNTHETIC_LOCATOR == "geometric"


def test_settings_name_the_locator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIPRO_IMAGING__LOCATOR", "tests.unit.imaging.test_locators:factory")
    assert Settings().imaging.locator == "tests.unit.imaging.test_locators:factory"


def test_a_torchscript_file_follows_the_contract(tmp_path: Path) -> None:
    path = tmp_path / "fixed.pt"
    torch.jit.script(FixedBoxes()).save(str(path))  # type: ignore[no-untyped-call]
    locator = load_locator(str(path))
    assert isinstance(locator, TorchScriptLocator)
    assert locator.input_size == 64
    boxes = locator.locate(np.zeros((300, 200), np.float32))
    assert boxes.method == "model"
    assert boxes.boxes[3] is None
    assert boxes.boxes[0] == pytest.approx((20.0, 60.0, 100.0, 240.0))


class TransposedBoxes(torch.nn.Module):
    """Forty numbers, but ``[1, 4, 10]``: read as ``[10, 4]`` they would be wrong boxes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((1, 4, 10), 0.5) + 0.0 * x.mean()


def test_a_model_breaking_the_contract_is_refused_when_it_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "transposed.pt"
    torch.jit.script(TransposedBoxes()).save(str(path))  # type: ignore[no-untyped-call]
    with pytest.raises(ModelContractError, match=r"output is \[1, 4, 10\]"):
        load_locator(str(path))
    with pytest.raises(ModelContractError):
        boxes_from_output(np.full((20, 2), 0.5), 100, 100)
    for name in ("garbage.pt", "garbage.onnx"):
        (tmp_path / name).write_text("not a model")
        with pytest.raises(ConfigError, match="not a"):
            load_locator(str(tmp_path / name))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_onnx_file_places_the_boxes_its_torchscript_twin_places(tmp_path: Path) -> None:
    scripted = load_locator("trained")
    assert isinstance(scripted, TorchScriptLocator)
    size = scripted.input_size
    path = tmp_path / "trained.onnx"
    torch.onnx.export(scripted.module, (torch.zeros(1, 1, size, size),), str(path), dynamo=False)
    locator = load_locator(str(path))
    assert isinstance(locator, OnnxLocator)
    assert locator.input_size == size
    film = np.asarray(Image.open(HANNOVER_FILM).convert("L"), dtype=np.float32) / 255.0
    want, got = scripted.locate(film), locator.locate(film)
    assert got.method == want.method == "model"
    for a, b in zip(got.boxes, want.boxes, strict=True):
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert a == pytest.approx(b, abs=0.05)


def test_scores_below_one_half_are_missing() -> None:
    out = np.array([[0.1, 0.1, 0.5, 0.5, 0.9 if i % 2 else 0.2] for i in range(10)])
    boxes = boxes_from_output(out, 100, 100)
    assert [b is not None for b in boxes.boxes] == [i % 2 == 1 for i in range(10)]


def test_the_regions_command_writes_overlays_json_and_iou(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    films = tmp_path / "films"
    films.mkdir()
    images, annotations = [], []
    for seed in range(3):
        anatomy = random_anatomy(np.random.default_rng(seed))
        image = render_chest(seed, anatomy, {})
        Image.fromarray((image * 255).astype(np.uint8)).save(films / f"f{seed}.png")
        truth: RegionBoxes = true_regions(anatomy, {})
        images.append({"id": seed + 1, "file_name": f"f{seed}.png", "width": 512, "height": 512})
        for c, box in enumerate(truth.boxes, start=1):
            assert box is not None
            x0, y0, x1, y1 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": seed + 1,
                    "category_id": c,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                }
            )
    coco = tmp_path / "truth.json"
    categories = [{"id": i, "name": n} for i, n in enumerate(REGIONS, start=1)]
    coco.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    out = tmp_path / "out"
    assert main(["regions", str(films), "--truth", str(coco), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean IoU per region" in printed
    result = json.loads((out / "regions.json").read_text())
    assert result["summary"]["films"] == 3
    assert len(list((out / "overlays").glob("*.png"))) == 3
    assert len(list((out / "closeups").glob("*.png"))) == 3
    assert result["summary"]["mean_iou"]["left_lung"] > 0.5
    assert result["summary"]["seconds_per_film"] > 0
    assert all("qc" in f and "seconds" in f for f in result["films"])


def test_films_of_one_stem_in_two_folders_get_two_drawings(tmp_path: Path) -> None:
    image = render_chest(0, random_anatomy(np.random.default_rng(0)), {})
    for folder in ("a", "b"):
        (tmp_path / "films" / folder).mkdir(parents=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "films" / folder / "1.png")
    out = tmp_path / "out"
    ev = evaluate_folder(tmp_path / "films", GeometricRegionLocator(), out)
    assert [r["file"] for r in ev.records] == ["a/1.png", "b/1.png"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a__1.png", "b__1.png"]
    assert sorted(p.name for p in (out / "closeups").iterdir()) == ["a__1.png", "b__1.png"]


def test_unreadable_films_are_counted_and_the_others_placed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    films = tmp_path / "films"
    films.mkdir()
    image = render_chest(0, random_anatomy(np.random.default_rng(0)), {})
    Image.fromarray((image * 255).astype(np.uint8)).save(films / "good.png")
    (films / "truncated.png").write_bytes((films / "good.png").read_bytes()[:300])
    (films / "text.dcm").write_text("not a DICOM file")
    Image.fromarray(np.zeros((3, 700), np.uint8)).save(films / "strip.png")
    out = tmp_path / "out"
    assert main(["-q", "regions", str(films), "--out", str(out), "--locator", "geometric"]) == 0
    assert "3 film(s) could not be read" in capsys.readouterr().out
    result = json.loads((out / "regions.json").read_text())
    assert result["summary"]["films"] == 4
    assert result["summary"]["films_unreadable"] == 3
    errors = {f["file"]: f.get("error") for f in result["films"]}
    assert errors["good.png"] is None
    assert "DICOM" in errors["text.dcm"]
    assert "PNG" in errors["truncated.png"]
    assert "(3, 700) is not a film" in errors["strip.png"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["good.png"]


def test_regions_refuses_a_folder_without_films_and_a_truth_file_that_is_not_coco(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    assert main(["regions", str(tmp_path / "absent"), "--out", out]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["regions", str(tmp_path / "empty"), "--out", out]) == 2
    assert "no PNG or DICOM film" in capsys.readouterr().err
    films = tmp_path / "films"
    films.mkdir()
    image = render_chest(0, random_anatomy(np.random.default_rng(0)), {})
    Image.fromarray((image * 255).astype(np.uint8)).save(films / "a.png")
    bad = tmp_path / "truth.json"
    for text, message in (
        ("{", "Expecting"),
        ('{"images": []}', "not COCO"),
        ('{"images": [], "categories": [], "annotations": [{"image_id": 1}]}', "KeyError"),
    ):
        bad.write_text(text)
        args = ["regions", str(films), "--out", out, "--truth", str(bad)]
        assert main(args) == 2
        assert message in capsys.readouterr().err
    bad.write_text('{"images": [], "categories": [], "annotations": []}')
    args = ["-q", "regions", str(films), "--out", out, "--truth", str(bad), "--locator"]
    assert main([*args, "geometric"]) == 0
    assert "no film has an annotation" in capsys.readouterr().out


def test_closeups_zoom_into_the_placed_and_the_annotated_small_boxes() -> None:
    image = np.full((1000, 800), 0.5, dtype=np.float32)
    placed: list[Box | None] = [None] * len(REGIONS)
    placed[REGIONS.index("right_costophrenic_angle")] = (100.0, 700.0, 180.0, 780.0)
    placed[REGIONS.index("left_hilar_structures")] = (450.0, 400.0, 530.0, 480.0)
    truth = {"right_costophrenic_angle": (120.0, 720.0, 200.0, 800.0)}
    sheet = np.asarray(closeups(image, placed, truth=truth, tile=240))
    assert sheet.shape == (484, 484, 3)

    def colour_in(rows: slice, cols: slice, rgb: tuple[int, int, int]) -> bool:
        return bool((sheet[rows, cols] == rgb).all(axis=-1).any())

    tiles = {
        "RH": (slice(0, 240), slice(0, 240)),
        "LH": (slice(0, 240), slice(244, 484)),
        "RCP": (slice(244, 484), slice(0, 240)),
        "LCP": (slice(244, 484), slice(244, 484)),
    }
    rcp = REGIONS.index("right_costophrenic_angle")
    lh = REGIONS.index("left_hilar_structures")
    assert colour_in(*tiles["RCP"], ImageColor.getrgb(COLOURS[rcp]))
    assert colour_in(*tiles["RCP"], TRUTH_COLOUR)
    assert colour_in(*tiles["LH"], ImageColor.getrgb(COLOURS[lh]))
    assert not colour_in(*tiles["LH"], TRUTH_COLOUR)
    # A region with neither a placed nor an annotated box stays an empty grey tile.
    assert (sheet[tiles["RH"]] == 40).all()
    # Zoomed: the window is three times the 100 px union of placed and annotated box, so the
    # 80 px angle box is drawn 80 * 240 / 300 = 64 px wide, not 80 * 240 / 1000.
    drawn = (sheet[tiles["RCP"]] == ImageColor.getrgb(COLOURS[rcp])).all(axis=-1)
    columns = np.flatnonzero(drawn.any(axis=0))
    assert 60 <= columns[-1] - columns[0] <= 68
