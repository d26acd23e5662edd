# ruff: noqa: E501  (long provenance strings are kept whole in the generated JSON)
"""Turn the reviewer's notes (one line per film) into the verdicts file and the COCO truth.

The notes are the primary record of the by-eye review of issue 11 (kept in
``tests/data/regions/hannover_review_notes.txt``; this script documents the format): ``image_id | verdict text | RL | LL | CS | MED | RH | LH |
RCP | LCP | lz_right lz_left [| lowconf|unannotatable]``, boxes ``x0 y0 x1 y1`` in pixels of the
development PNG. Lower lung zones are the annotated lung box from the annotated lower-zone
top (the inferior hilar level) to the lung base.

Usage: python scripts/regions_notes_to_json.py NOTES DATA_DIR OUT_DIR
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from PIL import Image

from dipro.vocab import REGIONS

SHORT = {
    "LL": 0,
    "RL": 1,
    "LLZ": 2,
    "RLZ": 3,
    "LH": 4,
    "RH": 5,
    "LCP": 6,
    "RCP": 7,
    "CS": 8,
    "MED": 9,
}
# Regions judged wrong per film (from the verdict text of the notes, made explicit).
WRONG = {
    "2ecd360d": "RL RLZ RCP LL LLZ LCP CS",
    "d2af569b": "RCP",
    "6646071b": "RCP",
    "90070cbc": "RCP LCP RL LL RLZ LLZ CS",
    "0578e08b": "LL LLZ LCP",
    "1930e42f": "LL LLZ LCP",
    "1bc3008e": "RCP LCP RLZ LLZ",
    "3161e216": "LCP",
    "483f2ad8": "LL LLZ LCP",
    "563118e4": "LL RL LLZ RLZ LH RH LCP RCP CS MED",
    "7a2d2695": "RCP RLZ LL LLZ LCP",
    "93fd0adb": "LL LLZ LH LCP",
    "a132d8b6": "RL LL RLZ LLZ RCP LCP CS",
    "b0500187": "RCP LCP RLZ LLZ",
    "b10c49ca": "RCP",
    "ce09cfab": "LL LLZ LCP",
    "8e438fce": "LCP",
    "887db78f": "RCP",
    "47e3c811": "RCP",
    "8251e162": "LL LLZ LCP RCP RLZ",
    "a47dc73e": "RCP LCP RLZ LLZ",
    "beef3909": "RCP LCP RLZ LLZ RL LL CS",
    "cb706009": "RCP RLZ",
    "23823ebc": "RCP LCP RLZ LLZ CS RL LL",
    "e87352fc": "RCP LCP RLZ LLZ CS RL LL",
}

# Films the geometric locator placed nothing on at b365097 and placed after issue 11's
# midline fix, looked at again with the quality-control flags drawn: (verdict, wrong regions,
# note).
AFTER = {
    "33ad0dcb": ("plausible", "", "placed after the midline fix; QC passes"),
    "a361d7b7": ("partly", "", "RL top above the apex; QC passes"),
    "d9d6ca9a": ("partly", "", "RL top above the apex; QC passes"),
    "3c3a2a35": ("wrong", "LL LLZ LCP", "LL/LCP over the arm; QC fails the film (lung-failed)"),
    "d7f2ee0f": ("partly", "", "right lung at the film edge; boxes on the lungs; QC passes"),
}

# The shipped trained locator (dipro_fhir/imaging/weights) with quality control on the 15
# films of the 4 held-out patients, looked at once as a montage (coarser than the 1:1 review).
TRAINED_HELDOUT = {
    "1052b0fe": ("partly", "", "kept; lung bases a little high"),
    "17ad0a56": ("wrong", "", "boxes reach into the collimated band; QC fails the film"),
    "23823ebc": ("plausible", "", "kept; on the chest, not over the abdomen as geometric"),
    "26e8db49": ("partly", "", "kept, RCP flagged"),
    "2ecd360d": ("partly", "", "kept, RCP flagged"),
    "33ad0dcb": ("plausible", "", "kept"),
    "3d388a98": ("partly", "", "kept"),
    "8da14fff": ("partly", "", "kept; lower boxes somewhat high"),
    "8e438fce": ("partly", "", "kept"),
    "a7abee59": ("partly", "", "kept"),
    "ada8c494": ("wrong", "LCP RCP", "kept; both angles well above the bases, NOT flagged"),
    "c4a0e11a": ("partly", "", "kept; geometric placed nothing here"),
    "cf35d0c4": ("partly", "", "kept, RCP flagged"),
    "d2af569b": ("plausible", "", "kept"),
    "e87352fc": ("partly", "", "roughly on the lungs; QC fails the film (lung-failed)"),
}


def _box(text: str) -> list[float]:
    return [float(v) for v in text.split()]


def main(notes: Path, data: Path, out: Path) -> None:
    meta = {r["image_id"]: r for r in csv.DictReader((data / "data.csv").open())}
    images, annotations, verdicts = [], [], []
    for line in notes.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        image_id, text = parts[0], parts[1]
        row = meta[image_id]
        w, h = Image.open(data / "png" / f"{image_id}.png").size
        flag = parts[11] if len(parts) > 11 else ""
        kind = text.split(":")[0].split(" (")[0].strip()
        wrong = sorted(REGIONS[SHORT[s]] for s in WRONG.get(image_id, "").split())
        if kind == "wrong" and not wrong:
            raise ValueError(f"{image_id}: wrong without regions")
        after = AFTER.get(image_id)
        verdicts.append(
            {
                "image_id": image_id,
                "patient_id": row["patient_id"],
                "modality": row["modality"],
                "projection": row["projection"],
                "geometric": {"verdict": kind, "wrong_regions": wrong, "note": text},
                **(
                    {
                        "geometric_after": {
                            "verdict": after[0],
                            "wrong_regions": sorted(REGIONS[SHORT[x]] for x in after[1].split()),
                            "note": after[2],
                        }
                    }
                    if after
                    else {}
                ),
                "annotated": flag != "unannotatable",
                "low_confidence": flag == "lowconf",
            }
        )
        img_id = len(images) + 1
        images.append(
            {
                "id": img_id,
                "file_name": f"png/{image_id}.png",
                "width": w,
                "height": h,
                "patient_id": row["patient_id"],
                "low_confidence": flag == "lowconf",
                "annotatable": flag != "unannotatable",
            }
        )
        if flag == "unannotatable":
            continue
        rl, ll, cs, med, rh, lh, rcp, lcp = (_box(p) for p in parts[2:10])
        lz_r, lz_l = _box(parts[10])
        boxes = {
            "left_lung": ll,
            "right_lung": rl,
            "left_lower_lung_zone": [ll[0], lz_l, ll[2], ll[3]],
            "right_lower_lung_zone": [rl[0], lz_r, rl[2], rl[3]],
            "left_hilar_structures": lh,
            "right_hilar_structures": rh,
            "left_costophrenic_angle": lcp,
            "right_costophrenic_angle": rcp,
            "cardiac_silhouette": cs,
            "mediastinum": med,
        }
        for ci, name in enumerate(REGIONS, start=1):
            x0, y0, x1, y1 = boxes[name]
            x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img_id,
                    "category_id": ci,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    info = {
        "description": "The ten DiPro (Chest ImaGenome) regions on the 67 development films of "
        "cxr-hannover-dev (11 patients), for issue 11.",
        "how_made": "Boxes read off by eye by one reviewer (an engineer, not a radiologist) "
        "from each film shown at 1:1 next to a labelled 32 px pixel grid; lungs, hila, costophrenic angles, "
        "cardiac silhouette and mediastinum drawn directly, each lower lung zone as the lung box "
        "below the reviewer's inferior-hilar level. Mediastinum follows this repository's "
        "convention (upper mediastinal column down to the top of the heart, dipro_fhir.imaging.boxes). "
        "Expect +-10-20 px; images marked low_confidence have opacified or hidden bases; "
        "images with annotatable=false (lungs not discernible or thorax out of frame) have "
        "no boxes.",
        "licence": "CC BY 3.0 (https://creativecommons.org/licenses/by/3.0/), like the films.",
        "attribution": "Films: the cxr-hannover-dev development set (Hannover Medical School "
        "chest radiographs, CC BY 3.0; see its LICENSE). Annotations: dipro-fhir contributors, CC BY 3.0.",
        "date_created": "2026-11-28",
    }
    coco = {
        "info": info,
        "licenses": [
            {"id": 1, "name": "CC BY 3.0", "url": "https://creativecommons.org/licenses/by/3.0/"}
        ],
        "categories": [{"id": i, "name": n} for i, n in enumerate(REGIONS, start=1)],
        "images": images,
        "annotations": annotations,
    }
    (out / "hannover_regions.coco.json").write_text(json.dumps(coco, indent=1) + "\n")
    doc = {
        "how_made": "Each of the 67 films rendered with the geometric locator's ten boxes next "
        "to a gridded copy (dipro_fhir.imaging.overlay, grid 32 px) and looked at one by one by the "
        "reviewer. verdict: plausible (all ten boxes on their anatomy), partly (boxes on the right "
        "structure but an edge clearly off, e.g. a lung top in the neck), wrong (at least one box "
        "not on its structure: below a diaphragm, outside the chest wall, over the abdomen, or "
        "missing its landmark; wrong_regions lists them), none (the locator placed nothing).",
        "locator": "GeometricRegionLocator at commit b365097 (before issue 11); "
        "geometric_after: the films it newly places after issue 11 (others are unchanged)",
        "films": verdicts,
        "trained_locator_heldout": {
            k: {
                "verdict": v,
                "wrong_regions": sorted(REGIONS[SHORT[x]] for x in w.split()),
                "note": n,
            }
            for k, (v, w, n) in TRAINED_HELDOUT.items()
        },
    }
    # The atlas locator's verdicts were reviewed later, on its own overlays, and written to the
    # verdicts file directly: keep them when the file is rebuilt from the notes.
    old_path = out / "hannover_verdicts.json"
    if old_path.is_file():
        old = json.loads(old_path.read_text())
        atlas = {f["image_id"]: f["atlas"] for f in old["films"] if "atlas" in f}
        for film in verdicts:
            if film["image_id"] in atlas:
                film["atlas"] = atlas[film["image_id"]]
        if "atlas_how_made" in old:
            doc["atlas_how_made"] = old["atlas_how_made"]
    old_path.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
