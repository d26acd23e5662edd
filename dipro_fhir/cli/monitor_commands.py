"""``dipro-fhir monitor``: the monitor's night from the command line, and the input reference
of a checkpoint (``dipro-fhir monitor reference``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dipro_fhir.cli.arguments import as_of, patient_ids, show_progress
from dipro_fhir.core.settings import Settings

REPORT_FILE = "monitor.html"
METRICS_FILE = "metrics.txt"


def cmd_monitor(args: argparse.Namespace) -> int:
    """Gather outcomes, compute the night's figures and drift, print the summary, write the
    HTML report and the OpenMetrics text; exit 1 when a threshold is breached."""
    if args.action == "reference":
        return _reference(args)
    from dipro_fhir.monitoring.alerts import MonitorBreach, check_night
    from dipro_fhir.monitoring.metrics import openmetrics_text
    from dipro_fhir.monitoring.night import compute_night
    from dipro_fhir.monitoring.outcomes import gather_outcomes
    from dipro_fhir.monitoring.report import summary_text, write_report
    from dipro_fhir.monitoring.view import load_view
    from dipro_fhir.run import connections

    settings = Settings()
    night = as_of(args.as_of)
    if not args.report_only:
        counts = gather_outcomes(settings, night)
        print(
            f"outcomes: {counts.followed} scores followed, {counts.known} known, "
            f"{counts.pending} pending (stays still open), {counts.missing} missing"
        )
        compute_night(settings, night)
    view = load_view(connections.engine(settings), until=night)
    print(summary_text(view))
    out = Path(args.out)
    report = write_report(view, out / REPORT_FILE)
    (out / METRICS_FILE).write_text(openmetrics_text(view), encoding="utf-8")
    print(f"report: {report}\nmetrics: {out / METRICS_FILE}")
    if args.report_only:
        return 0
    try:
        check_night(settings, night)
    except MonitorBreach as exc:
        print(f"breach: {exc}")
        return 1
    return 0


def _reference(args: argparse.Namespace) -> int:
    """Compute the input reference of --checkpoint and write it into its model card."""
    from dipro_fhir.evaluation.reference import record_input_reference

    if not args.checkpoint:
        raise SystemExit("dipro-fhir monitor reference: --checkpoint is required")
    settings, source = Settings(), args.site or ""
    if args.demo_heldout:
        settings, source = _demo_heldout(settings, Path(args.workdir), args.demo_heldout)
    with show_progress(args.quiet, "patient-nights") as bar:
        entry = record_input_reference(
            settings,
            Path(args.checkpoint),
            patient_ids=patient_ids(args),
            source=source,
            progress=lambda done: bar.update(done - bar.n),
        )
    profile = entry["profile"]
    print(
        f"input reference of {profile['patients']} patient-nights ({entry['source']}) written "
        f"to the model card of {args.checkpoint}"
    )
    return 0


def _demo_heldout(settings: Settings, workdir: Path, patients: int) -> tuple[Settings, str]:
    """Settings reading the demo checkpoint's held-out synthetic cohort (written once)."""
    from dipro_fhir.core.settings import SYNTHETIC_LOCATOR
    from dipro_fhir.synth.cohorts import write_cohort_once
    from dipro_fhir.training.recipe import DemoTraining

    seed = DemoTraining().heldout_seed
    folder = workdir / f"heldout-{seed}-{patients}"
    write_cohort_once(folder, patients, seed, None, "heldout")
    settings = settings.model_copy(
        update={
            "fhir": settings.fhir.model_copy(update={"ndjson_dir": folder, "base_url": None}),
            "dicomweb": settings.dicomweb.model_copy(
                update={"folder": folder / "dicom", "base_url": None}
            ),
            "imaging": settings.imaging.model_copy(update={"locator": SYNTHETIC_LOCATOR}),
        }
    )
    return settings, f"the demo's held-out synthetic cohort (seed {seed}, {patients} patients)"
