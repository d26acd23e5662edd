#!/usr/bin/env python
"""Where the atlas's lung boxes end against the annotated lung bases, and whether its
costophrenic boxes hold the annotated recess (issue 23, item 8).

Runs the atlas locator leave-patient-out (no film of the film's own patient in the atlas) on
the annotated development films and prints, per side:

* the base offset: (annotated lung box bottom - placed lung box bottom) / annotated lung
  height; positive = the placed box ends above the annotated base (median, and the share of
  films ending more than 0.05 lung heights above or below it);
* the share of costophrenic boxes holding the recess, the lower lateral corner of the
  annotated lung box (its lowest-lateral point; the annotated angle boxes put it on their
  lateral and lower edges);
* the mean IoU of the lower lung zones, the lungs and the angles with the annotated boxes;
* the films quality control keeps.

``--derive`` also runs the locator with no recess margin and prints how far the annotated
recess lay outward of and below the placed lung box's corner (its percentiles give
``registration.RECESS_MARGIN``), and, nested leave-patient-out, the share of angle boxes
holding the recess when the margin is chosen from the other patients' films only.

    .venv/bin/python scripts/regions_base_offset.py [--derive] [--atlas PATH] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "model"))

from dipro.vocab import REGIONS  # noqa: E402
from dipro_fhir.imaging.atlas import SHIPPED_ATLAS, AtlasRegionLocator  # noqa: E402
from dipro_fhir.imaging.boxes import Box  # noqa: E402
from dipro_fhir.imaging.evaluate import iou, load_coco, load_patients, read_film  # noqa: E402
from dipro_fhir.imaging.qc import check_placement  # noqa: E402

SIDES = ("right", "left")
#: The share of margins to hold the recess within (``--derive``).
QUANTILE = 0.85


def corner(box: Box, side: str) -> tuple[float, float]:
    """The lower lateral corner of a lung box (the patient's right lung is on the image left)."""
    return (box[0] if side == "right" else box[2]), box[3]


def holds(box: Box | None, point: tuple[float, float]) -> bool:
    """Whether ``point`` lies inside ``box`` (edges included)."""
    return box is not None and box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def measure_film(
    locator: AtlasRegionLocator, path: Path, truth: dict[str, Box], patient: str
) -> dict[str, Any]:
    """One film's boxes, QC verdict and per-side figures."""
    image = read_film(path)
    boxes = locator.leave_out(patient).locate(image)
    qc = check_placement(image, boxes)
    placed = dict(zip(REGIONS, boxes.boxes, strict=True))
    row: dict[str, Any] = {"film": path.stem, "patient": patient, "film_ok": qc.film_ok}
    for side in SIDES:
        want, got = truth[f"{side}_lung"], placed[f"{side}_lung"]
        if got is None:
            row[side] = None
            continue
        height, width = want[3] - want[1], want[2] - want[0]
        gw, gh = got[2] - got[0], got[3] - got[1]
        recess = corner(want, side)
        out = (got[0] - recess[0]) if side == "right" else (recess[0] - got[2])
        row[side] = {
            "base_offset": (want[3] - got[3]) / height,
            "lateral_offset": out / width,  # the placed edge medial of the annotated one: > 0
            "need_out": out / gw,  # recess outward of the placed corner, placed lung widths
            "need_down": (recess[1] - got[3]) / gh,  # recess below it, placed lung heights
            "holds_recess": holds(placed[f"{side}_costophrenic_angle"], recess),
            "iou": {
                part: iou(box, truth[f"{side}_{part}"])
                for part in ("lung", "lower_lung_zone", "costophrenic_angle")
                if (box := placed[f"{side}_{part}"]) is not None
            },
        }
    return row


def summarise(rows: list[dict[str, Any]]) -> None:
    """Print the per-side figures of :func:`measure_film` rows."""
    print(f"films {len(rows)}, kept by QC {sum(r['film_ok'] for r in rows)}")
    for side in SIDES:
        got = [r[side] for r in rows if r[side] is not None]
        off = np.array([g["base_offset"] for g in got])
        print(
            f"{side:5s}: base offset median {np.median(off):+.3f} lung heights "
            f"(mean {off.mean():+.3f}; ends > 0.05 above {np.mean(off > 0.05):.0%}, "
            f"> 0.05 below {np.mean(off < -0.05):.0%}); "
            f"lateral edge inset median {np.median([g['lateral_offset'] for g in got]):+.3f} "
            f"lung widths"
        )
        ious = {
            part: np.mean([g["iou"].get(part, 0.0) for g in got])
            for part in ("lung", "lower_lung_zone", "costophrenic_angle")
        }
        print(
            f"       angle box holds the recess {np.mean([g['holds_recess'] for g in got]):.0%} "
            f"of {len(got)}; mean IoU lung {ious['lung']:.3f}, lower zone "
            f"{ious['lower_lung_zone']:.3f}, angle {ious['costophrenic_angle']:.3f}"
        )


def derive(rows: list[dict[str, Any]]) -> None:
    """Margins that hold the recess (rows measured with no margin), and their nested
    leave-patient-out share."""
    got = [(r["patient"], side, r[side]) for r in rows for side in SIDES if r[side]]
    out = np.array([g["need_out"] for _, _, g in got])
    down = np.array([g["need_down"] for _, _, g in got])
    for q in (0.5, 0.75, QUANTILE, 0.9):
        print(
            f"percentile {100 * q:.0f}: recess outward {np.quantile(out, q):+.3f} lung widths, "
            f"below {np.quantile(down, q):+.3f} lung heights (both sides pooled)"
        )
    held = {side: [] for side in SIDES}  # type: dict[str, list[bool]]
    for patient in sorted({p for p, _, _ in got}):
        train = [g for p, _, g in got if p != patient]
        mx = max(0.0, float(np.quantile([g["need_out"] for g in train], QUANTILE)))
        my = max(0.0, float(np.quantile([g["need_down"] for g in train], QUANTILE)))
        for p, side, g in got:
            if p == patient:
                held[side].append(g["need_out"] <= mx and g["need_down"] <= my)
    print(
        f"nested leave-patient-out (margins at the {100 * QUANTILE:.0f}th percentile of the other "
        "patients' films; holds when the recess is inside both margins; the angle box's own "
        "extent beyond the corner is ignored, so a lower bound): "
        + ", ".join(f"{side} {np.mean(v):.0%}" for side, v in held.items())
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--films", default=str(REPO.parent / "shared/data/cxr-hannover-dev/png"))
    parser.add_argument(
        "--truth", default=str(REPO / "tests/data/regions/hannover_regions.coco.json")
    )
    parser.add_argument("--atlas", default=str(SHIPPED_ATLAS))
    parser.add_argument("--derive", action="store_true", help="margins from no-margin runs")
    parser.add_argument("--json", help="write the per-film rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # identical boxes, and no fight over a loaded machine's cores
    truth, patients = load_coco(Path(args.truth)), load_patients(Path(args.truth))
    locator = AtlasRegionLocator.load(Path(args.atlas))
    if args.derive:
        if "recess_margin" not in {f.name for f in fields(locator)}:
            print("this locator has no recess margin: nothing to derive")
            return 1
        locator = replace(locator, recess_margin=(0.0, 0.0))
    films = Path(args.films)
    rows = [
        measure_film(locator, films / f"{stem}.png", boxes, patients[stem])
        for stem, boxes in sorted(truth.items())
        if set(boxes) >= set(REGIONS)
    ]
    print(f"atlas {args.atlas}" + (" (no recess margin)" if args.derive else ""))
    summarise(rows)
    if args.derive:
        derive(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
