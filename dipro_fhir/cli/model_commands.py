"""The commands that make and measure checkpoints: ``train``, ``evaluate`` and
``train-demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from dipro_fhir.cli.arguments import patient_ids, show_progress
from dipro_fhir.core.settings import Settings


def cmd_train(args: argparse.Namespace) -> int:
    """Train, calibrate and validate a checkpoint from the configured sources (the given
    patients, or every patient with a finished stay); nothing is saved unless it learns."""
    from dipro_fhir.evaluation.report import render_text
    from dipro_fhir.training.from_source import train_from_settings

    with show_progress(args.quiet, "patients read") as bar:

        def read(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        outcome = train_from_settings(
            Settings(),
            patient_ids(args),
            Path(args.out),
            name=args.name,
            version=args.version,
            epochs=args.epochs,
            site=args.site or "",
            seed=args.seed,
            progress=lambda line: bar.write(line),
            patients_read=read,
        )
    print(f"trained: {', '.join(outcome.tasks)}; patients per split {outcome.split_counts}")
    for task, why in outcome.left_out.items():
        print(f"left out: {task} ({why})")
    print(render_text(outcome.validation))
    print(f"checkpoint, baseline and evaluation.html of the test split in {outcome.checkpoint}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on the configured sources' patients against simple baselines:
    evaluation.json and evaluation.html (with --record, also into its model card)."""
    from dipro_fhir.evaluation.report import HTML_FILE, render_text
    from dipro_fhir.evaluation.run import evaluate_checkpoint

    with show_progress(args.quiet, "patients") as bar:
        record = evaluate_checkpoint(
            Settings(),
            Path(args.checkpoint),
            Path(args.out),
            patient_ids=patient_ids(args),
            site=args.site or "",
            resamples=args.bootstrap,
            record=args.record,
            progress=lambda done: bar.update(done - bar.n),
        )
    print(render_text(record))
    print(f"report: {Path(args.out) / HTML_FILE}")
    if args.record:
        print(f"recorded as the validation of {args.checkpoint}")
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    """Rebuild the demo checkpoint: synthetic training cohort, training, held-out evaluation
    (the shipped one is dipro_fhir/training/demo_checkpoint)."""
    from dipro_fhir.evaluation.report import render_text
    from dipro_fhir.training.demo_checkpoint import build_demo_checkpoint
    from dipro_fhir.training.recipe import DemoTraining

    recipe = DemoTraining(patients=args.patients, heldout=args.heldout, epochs=args.epochs)
    _, record = build_demo_checkpoint(
        Path(args.out), Path(args.workdir), recipe, lambda line: print(line, flush=True)
    )
    print(render_text(record))
    print(f"demo checkpoint in {args.out}")
    return 0
