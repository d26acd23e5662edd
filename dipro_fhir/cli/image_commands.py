"""The commands about the chest films' regions: ``regions`` places them on a folder of films,
``train-locator`` builds an atlas or trains the network that places them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dipro_fhir.core.settings import Settings


def cmd_regions(args: argparse.Namespace) -> int:
    """Place the ten regions on a folder of DICOM/PNG films: overlays, JSON, IoU vs truth."""
    from dipro_fhir.imaging.evaluate import (
        evaluate_folder,
        load_coco,
        load_patients,
        render_summary,
    )
    from dipro_fhir.imaging.locators import load_locator

    spec = args.locator if args.locator is not None else Settings().imaging.locator
    truth = load_coco(Path(args.truth)) if args.truth else None
    patients = load_patients(Path(args.truth)) if args.truth else None
    out = Path(args.out)
    result = evaluate_folder(
        Path(args.folder),
        load_locator(spec),
        out,
        truth,
        patients,
        show_progress=not args.quiet,
    )
    summary = result.summary()
    print(render_summary(summary))
    if summary["films_unreadable"]:
        print(f"{summary['films_unreadable']} film(s) could not be read: see regions.json")
    if truth is not None and not summary["films_with_truth"]:
        print(f"no film has an annotation in {args.truth} (matched by file name without suffix)")
    print(f"overlays, close-ups of the hila and angles, and regions.json in {out}")
    return 0


def cmd_train_locator(args: argparse.Namespace) -> int:
    """Build a region atlas (``--kind atlas``) or train the small region-locator network
    (``--kind network``) from COCO boxes."""
    from dipro_fhir.imaging.train_locator import train_locator

    if args.kind == "atlas":
        from dipro_fhir.imaging.atlas import build_atlas

        target = Path(args.out) / "region_atlas.npz"
        atlas = build_atlas(Path(args.coco), Path(args.images), target, args.data_note or "")
        patients = len(set(atlas.patients))
        print(f"atlas of {len(atlas)} films of {patients} patients in {target}")
        print(f"use it with DIPRO_IMAGING__LOCATOR={target}")
        return 0
    holdout = [p for arg in args.holdout or () for p in arg.split(",") if p]
    card = train_locator(
        Path(args.coco),
        Path(args.images),
        Path(args.out),
        holdout=holdout,
        epochs=args.epochs,
        input_size=args.input_size,
        seed=args.seed,
        data_note=args.data_note or "",
    )
    print(json.dumps(card["heldout_mean_iou"], indent=2))
    print(f"weights and model card in {args.out}")
    return 0
