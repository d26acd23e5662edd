"""The by-eye review of the development films (issue 11): verdicts and COCO truth are
consistent with each other and anatomically ordered."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from dipro.vocab import REGIONS

DATA = Path(__file__).resolve().parents[2] / "data" / "regions"


def _load(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((DATA / name).read_text())


def test_every_film_has_a_verdict_and_licence_is_stated() -> None:
    verdicts = _load("hannover_verdicts.json")["films"]
    coco = _load("hannover_regions.coco.json")
    assert len(verdicts) == 67
    assert len({v["image_id"] for v in verdicts}) == 67
    assert len({v["patient_id"] for v in verdicts}) == 11
    assert "CC BY 3.0" in coco["info"]["licence"]
    assert "how_made" in coco["info"]
    assert [c["name"] for c in coco["categories"]] == list(REGIONS)
    kinds = Counter(v["geometric"]["verdict"] for v in verdicts)
    assert set(kinds) <= {"plausible", "partly", "wrong", "none"}
    for v in verdicts:
        wrong = v["geometric"]["wrong_regions"]
        assert (v["geometric"]["verdict"] == "wrong") == bool(wrong)
        assert set(wrong) <= set(REGIONS)


def test_annotations_are_complete_and_in_anatomical_order() -> None:
    coco = _load("hannover_regions.coco.json")
    by_image: dict[int, dict[str, list[float]]] = {}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert w > 0
        assert h > 0
        by_image.setdefault(a["image_id"], {})[names[a["category_id"]]] = [x, y, x + w, y + h]
    annotated = [im for im in coco["images"] if im["annotatable"]]
    assert len(by_image) == len(annotated) >= 60
    for boxes in by_image.values():
        assert set(boxes) == set(REGIONS)
        right, left = boxes["right_lung"], boxes["left_lung"]
        assert right[0] < left[0]
        assert right[2] <= left[2]
        assert boxes["mediastinum"][1] < boxes["cardiac_silhouette"][1]
        for side in ("left", "right"):
            lung, cp = boxes[f"{side}_lung"], boxes[f"{side}_costophrenic_angle"]
            assert cp[3] >= lung[3] - 1
            assert cp[1] > lung[1]
            assert boxes[f"{side}_hilar_structures"][3] < lung[3]
