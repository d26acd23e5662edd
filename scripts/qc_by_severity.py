#!/usr/bin/env python
"""Region QC's drop rate by disease severity on the synthetic world (issue 22).

QC that drops the sickest films moves exactly the patients whose progression matters to the
EHR-only path, missing not at random. This renders the frontal film of every study of a
seeded synthetic cohort, places the regions with the synthetic world's locator, runs QC, and
prints per severity decile (total finding severity of the film, summed over findings and
regions) the share of films QC leaves out with its reasons, how many were placed from the
thorax outline instead (white lungs, ``dipro_fhir.imaging.thorax``: used, flagged
``regions-from-thorax``), and how many kept films have a lung box far from the true one
(IoU < 0.5), with and without that flag; then the ratio of the most severe decile's drop
rate to the mildest's (issue 22: at most 1.5).

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
from dipro_fhir.imaging.qc import THORAX_METHOD, check_placement
from dipro_fhir.imaging.thorax import fallback_placement
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.images import render_study
from dipro_fhir.synth.radiograph import true_regions

#: Severity, QC film reason ("" = kept), mean lung IoU, placed from the thorax outline.
Row = tuple[float, str, float, bool]


def measure(patients: int, seed: int) -> list[Row]:
    """Severity, QC verdict (after the thorax-outline fallback, as the pipeline), lung IoU
    against the truth and whether the fallback placed it, of every frontal film."""
    locator = load_locator(SYNTHETIC_LOCATOR)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    rows: list[Row] = []
    for patient in generate_cohort(patients, seed=seed, start=start, id_prefix="qc"):
        for study in patient.studies:
            image = decode_radiograph(next(render_study(patient, study)))
            boxes = locator.locate(image)
            severity = float(np.sum(study.severity))
            if not boxes.mask.any():
                rows.append((severity, "regions-not-found", 0.0, False))
                continue
            qc = check_placement(image, boxes)
            fallback = fallback_placement(image, boxes, qc)
            if fallback is not None:
                boxes, qc = fallback
            truth = true_regions(
                patient.anatomy,
                study.severity_map(),
                view=study.images[0].view_position,
                size=image.shape,
            )
            pairs = [(boxes.boxes[i], truth.boxes[i]) for i in (0, 1)]
            lungs = [iou(b, t) if b and t else 0.0 for b, t in pairs]
            rows.append(
                (severity, qc.film_reason, float(np.mean(lungs)), boxes.method == THORAX_METHOD)
            )
    return rows


def decile_of(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """The decile (0..9) of every row's severity, and the 11 decile edges."""
    severity = np.array([r[0] for r in rows])
    edges = np.quantile(severity, np.linspace(0, 1, 11))
    return np.clip(np.searchsorted(edges, severity, side="right") - 1, 0, 9), edges


def drop_rates(rows: list[Row]) -> list[float]:
    """The share of films left out, per severity decile (mildest first)."""
    which, _ = decile_of(rows)
    return [
        float(np.mean([bool(rows[i][1]) for i in np.flatnonzero(which == d)] or [0.0]))
        for d in range(10)
    ]


def ratio(rates: list[float]) -> float:
    """The most severe decile's drop rate over the mildest's (issue 22: at most 1.5); with
    none dropped in the mildest, 1.0 when none is dropped in the most severe either, else
    infinity."""
    if rates[0] > 0:
        return rates[-1] / rates[0]
    return 1.0 if rates[-1] == 0 else float("inf")


def deciles(rows: list[Row]) -> list[str]:
    """One line per severity decile, and the ratio."""
    which, edges = decile_of(rows)
    lines = []
    for d in range(10):
        inside = [rows[i] for i in np.flatnonzero(which == d)]
        dropped = Counter(r[1] for r in inside if r[1])
        outline = sum(1 for r in inside if not r[1] and r[3])
        wrong = [r for r in inside if not r[1] and r[2] < 0.5]
        flagged = sum(1 for r in wrong if r[3])
        share = sum(dropped.values()) / max(len(inside), 1)
        lines.append(
            f"decile {d + 1:2d} (severity {edges[d]:5.2f}-{edges[d + 1]:5.2f}): "
            f"{len(inside):4d} films, left out {sum(dropped.values()):3d} ({share:6.1%}) "
            f"{dict(dropped.most_common())}; placed from the thorax outline {outline}; "
            f"kept with a lung IoU < 0.5: {len(wrong) - flagged} unflagged, {flagged} flagged"
        )
    rates = drop_rates(rows)
    lines.append(
        f"drop rate most severe / mildest decile: {rates[-1]:.1%} / {rates[0]:.1%} = "
        f"{ratio(rates):.2f} (issue 22: at most 1.5)"
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
