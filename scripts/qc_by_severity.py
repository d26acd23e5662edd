#!/usr/bin/env python
"""Region QC's drop rate by disease severity on the synthetic world (issue 22).

QC that drops the sickest films moves exactly the patients whose progression matters to the
EHR-only path, missing not at random. This renders the frontal film of every study of a
seeded synthetic cohort, places the regions with the synthetic world's locator, runs QC, and
prints per severity decile (total finding severity of the film, summed over findings and
regions) the share of films QC leaves out with its reasons, and how many kept films have a
lung box far from the true one (IoU < 0.5: a wrong placement QC did not flag).

    .venv/bin/python scripts/qc_by_severity.py --patients 800 --seed 4242
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))

from dipro_fhir.core.settings import SYNTHETIC_LOCATOR
from dipro_fhir.imaging.decode import decode_radiograph
from dipro_fhir.imaging.evaluate import iou
from dipro_fhir.imaging.locators import load_locator
from dipro_fhir.imaging.qc import check_placement
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.images import render_study
from dipro_fhir.synth.radiograph import true_regions

Row = tuple[float, str, float]  # severity, QC film reason ("" = kept), mean lung IoU


def measure(patients: int, seed: int) -> list[Row]:
    """Severity, QC verdict and lung IoU against the truth of every frontal film."""
    locator = load_locator(SYNTHETIC_LOCATOR)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    rows: list[Row] = []
    for patient in generate_cohort(patients, seed=seed, start=start, id_prefix="qc"):
        for study in patient.studies:
            image = decode_radiograph(next(render_study(patient, study)))
            boxes = locator.locate(image)
            severity = float(np.sum(study.severity))
            if not boxes.mask.any():
                rows.append((severity, "regions-not-found", 0.0))
                continue
            qc = check_placement(image, boxes)
            truth = true_regions(
                patient.anatomy,
                study.severity_map(),
                view=study.images[0].view_position,
                size=image.shape,
            )
            pairs = [(boxes.boxes[i], truth.boxes[i]) for i in (0, 1)]
            lungs = [iou(b, t) if b and t else 0.0 for b, t in pairs]
            rows.append((severity, qc.film_reason, float(np.mean(lungs))))
    return rows


def deciles(rows: list[Row]) -> list[str]:
    """One line per severity decile."""
    severity = np.array([r[0] for r in rows])
    edges = np.quantile(severity, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(edges, severity, side="right") - 1, 0, 9)
    lines = []
    for d in range(10):
        inside = [rows[i] for i in np.flatnonzero(which == d)]
        dropped = Counter(r[1] for r in inside if r[1])
        wrong = sum(1 for r in inside if not r[1] and r[2] < 0.5)
        share = sum(dropped.values()) / max(len(inside), 1)
        lines.append(
            f"decile {d + 1:2d} (severity {edges[d]:5.2f}-{edges[d + 1]:5.2f}): "
            f"{len(inside):4d} films, left out {sum(dropped.values()):3d} ({share:6.1%}) "
            f"{dict(dropped.most_common())}; kept with a lung IoU < 0.5: {wrong}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=800)
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = measure(args.patients, args.seed)
    print(f"{len(rows)} films of {args.patients} patients in {time.perf_counter() - started:.0f} s")
    print("\n".join(deciles(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
