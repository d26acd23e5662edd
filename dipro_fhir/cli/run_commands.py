"""The commands that run the job or look at its sources and results: ``demo``, ``score``,
``extract``, ``codes``, ``check``, ``db upgrade`` and ``retract``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dipro_fhir.cli.arguments import as_of, patients_file
from dipro_fhir.core.settings import Settings


def cmd_score(args: argparse.Namespace) -> int:
    """One scoring run against the configured servers, without a scheduler."""
    from tqdm import tqdm

    from dipro_fhir.run.pipeline import RunRequest, run_locally

    request = RunRequest(
        as_of=as_of(args.as_of),
        dag_run_id=f"cli-{int(time.time())}",
        cohort=args.cohort,
        patient_ids=tuple(args.patient or ()),
        group_id=args.group,
        dry_run=args.dry_run,
        kind=args.kind,
    )
    with tqdm(desc="chunks", unit="step", disable=args.quiet) as bar:

        def progress(stage: str, done: int, total: int) -> None:
            bar.total = 3 * total
            bar.set_postfix_str(f"{stage} chunk {done}/{total}")
            bar.update(1)

        summary = run_locally(Settings(), request, progress)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract and map a cohort with a progress bar; print stage timings and patients/s."""
    from dipro_fhir.reports.extract_report import extract_cohort

    settings = Settings()
    report = extract_cohort(
        settings,
        as_of=as_of(args.as_of),
        patient_ids=args.patient or (),
        crop_size=args.crop_size,
        limit=args.limit,
        show_progress=not args.quiet,
    )
    print(report.render())
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    """List every Observation code of the FHIR source with counts, mapped or not."""
    from dipro_fhir.core.settings import FhirSettings
    from dipro_fhir.reports.codes_report import code_json, count_codes, render_codes
    from dipro_fhir.run import connections

    settings = Settings()
    if args.ndjson:
        settings = settings.model_copy(update={"fhir": FhirSettings(ndjson_dir=Path(args.ndjson))})
    source = connections.fhir_source(settings, images=False)
    inventory = count_codes(source.scan_observations(), connections.code_maps(settings))
    if args.json:
        print(json.dumps([code_json(r) for r in inventory.rows], indent=2))
    else:
        print(render_codes(inventory, args.limit))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check connectivity and auth to FHIR, DICOMweb and the database, and the checkpoint."""
    from dipro_fhir.run.checks import run_checks

    results = run_checks(Settings())
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name:10s} {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Create or migrate the results schema (``alembic upgrade head``)."""
    from dipro_fhir.run import connections
    from dipro_fhir.store.migrate import upgrade_database

    upgrade_database(connections.engine(Settings()), args.revision)
    print(f"results database at revision {args.revision}")
    return 0


def cmd_retract(args: argparse.Namespace) -> int:
    """Retract a model version's results: RiskAssessments entered-in-error, rows marked."""
    from dipro_fhir.run.retraction import run_retraction
    from dipro_fhir.store.retractions import RetractionRequest

    patients = list(args.patient or ())
    if args.patients_file:
        patients += patients_file(args.patients_file)
    request = RetractionRequest(
        model_version=args.model_version,
        reason=args.reason,
        since=as_of(args.since) if args.since else None,
        until=as_of(args.until) if args.until else None,
        patients=tuple(patients),
        model_name=args.model_name,
    )
    print(json.dumps(run_retraction(Settings(), request), indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: synthetic cohort, demo checkpoint, the nightly DAG, a report."""
    from dipro_fhir.cli.demo import DemoOptions, run_demo

    options = DemoOptions(
        workdir=Path(args.workdir), patients=args.patients, use_airflow=not args.no_airflow
    )
    run_demo(options)
    return 0
