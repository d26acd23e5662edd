"""train-locator: a tiny run writes TorchScript weights that the seam loads, and a model card
with the held-out IoU of both locators."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dipro.vocab import REGIONS
from dipro_fhir.core.errors import ConfigError
from dipro_fhir.imaging.atlas import build_atlas
from dipro_fhir.imaging.locators import SHIPPED_WEIGHTS, load_locator
from dipro_fhir.imaging.train_locator import train_locator
from dipro_fhir.synth.radiograph import random_anatomy, render_chest, true_regions


def _coco(folder: Path, n: int) -> Path:
    images, annotations = [], []
    for seed in range(n):
        anatomy = random_anatomy(np.random.default_rng(seed))
        pixels = (render_chest(seed, anatomy, {}) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"s{seed}.png")
        images.append({"id": seed + 1, "file_name": f"s{seed}.png", "patient_id": f"p{seed % 3}"})
        for c, box in enumerate(true_regions(anatomy, {}).boxes, start=1):
            assert box is not None
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": seed + 1,
                    "category_id": c,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                }
            )
    path = folder / "boxes.json"
    categories = [{"id": i, "name": r} for i, r in enumerate(REGIONS, start=1)]
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return path


def test_a_short_training_writes_weights_and_a_card(tmp_path: Path) -> None:
    coco = _coco(tmp_path, 6)
    out = tmp_path / "model"
    card = train_locator(coco, tmp_path, out, holdout=["p2"], epochs=3, input_size=64)
    assert card["heldout_patients"] == ["p2"]
    assert card["heldout_films"] == 2
    assert card["train_films"] == 4
    assert set(card["heldout_mean_iou"]["trained"]) == set(REGIONS)
    assert set(card["heldout_mean_iou"]["geometric"]) == set(REGIONS)
    assert (out / "MODEL_CARD.md").read_text().startswith("# Region locator model card")
    locator = load_locator(str(out / "region_locator.pt"))
    boxes = locator.locate(np.zeros((200, 300), np.float32))
    assert len(boxes.boxes) == len(REGIONS)


def test_the_shipped_weights_load_and_have_a_card() -> None:
    card = json.loads((SHIPPED_WEIGHTS.parent / "model_card.json").read_text())
    assert "CC BY 3.0" in card["licence"]
    assert card["heldout_films"] > 0
    assert not set(card["heldout_patients"]) & set(card["train_patients"])
    boxes = load_locator("trained").locate(np.full((256, 256), 0.5, np.float32))
    assert boxes.method in ("model", "none")


def test_bad_training_input_stops_with_the_reason_before_training(tmp_path: Path) -> None:
    coco = _coco(tmp_path, 3)
    out = tmp_path / "model"
    with pytest.raises(ConfigError, match="no held-out film"):
        train_locator(coco, tmp_path, out, holdout=["nobody"], epochs=1, input_size=64)
    with pytest.raises(ConfigError, match="every annotated patient is held out"):
        train_locator(coco, tmp_path, out, holdout=["p0", "p1", "p2"], epochs=1, input_size=64)
    (tmp_path / "s1.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=r"training film .*s1\.png: not a readable PNG"):
        train_locator(coco, tmp_path, out, holdout=["p2"], epochs=1, input_size=64)
    with pytest.raises(ConfigError, match=r"training film .*s1\.png"):
        build_atlas(coco, tmp_path, tmp_path / "atlas.npz")
    assert not out.exists()
