"""The ``dipro-fhir`` command: the demo, scoring runs, training, checks and utilities.

Every subcommand builds :class:`~dipro_fhir.settings.Settings` once (from ``DIPRO_*``
environment variables, or the embedded default under ``--workdir``) and calls library code;
nothing here holds logic the DAGs would not also run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dipro_fhir import log
from dipro_fhir.errors import ConfigError, DiproFhirError
from dipro_fhir.settings import Settings

logger = logging.getLogger("dipro_fhir.cli")


def _as_of(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not an ISO 8601 time (for example 2026-11-28T02:00:00+01:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def fhir_id(text: str) -> str:
    """An argparse type: a FHIR id (1-64 of A-Z a-z 0-9 - .), else a usage error."""
    from dipro_fhir.limits import is_fhir_id

    if not is_fhir_id(text):
        raise argparse.ArgumentTypeError(
            f"not a FHIR id ({len(text)} characters; 1-64 of A-Z a-z 0-9 - . are allowed)"
        )
    return text


def _patients_file(path: str) -> list[str]:
    """The patient ids of a file, one per line (blank lines skipped).

    Raises:
        ConfigError: The file cannot be read, or a line is not a FHIR id (its number is
            named, not its text).
    """
    from dipro_fhir.limits import is_fhir_id

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"patients file {path}: {exc}") from exc
    ids = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not is_fhir_id(line.strip()):
            raise ConfigError(f"patients file {path}, line {number}: not a FHIR id")
        ids.append(line.strip())
    return ids


def cmd_score(args: argparse.Namespace) -> int:
    """One scoring run against the configured servers, without a scheduler."""
    from tqdm import tqdm

    from dipro_fhir.pipeline import RunRequest, run_locally

    request = RunRequest(
        as_of=_as_of(args.as_of),
        dag_run_id=f"cli-{int(time.time())}",
        cohort=args.cohort,
        patient_ids=tuple(args.patient or ()),
        group_id=args.group,
        dry_run=args.dry_run,
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
    from dipro_fhir.extract_report import extract_cohort

    settings = Settings()
    report = extract_cohort(
        settings,
        as_of=_as_of(args.as_of),
        patient_ids=args.patient or (),
        crop_size=args.crop_size,
        limit=args.limit,
        show_progress=not args.quiet,
    )
    print(report.render())
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    """List every Observation code of the FHIR source with counts, mapped or not."""
    from dipro_fhir import connections
    from dipro_fhir.codes_report import count_codes, render_codes
    from dipro_fhir.settings import FhirSettings

    settings = Settings()
    if args.ndjson:
        settings = settings.model_copy(update={"fhir": FhirSettings(ndjson_dir=Path(args.ndjson))})
    source = connections.fhir_source(settings, images=False)
    rows = count_codes(source.scan_observations(), connections.code_maps(settings))
    if args.json:
        print(json.dumps([_code_json(r) for r in rows], indent=2))
    else:
        print(render_codes(rows, args.limit))
    return 0


def _code_json(row: Any) -> dict[str, Any]:
    return {
        "system": row.system,
        "code": row.code,
        "display": row.display,
        "observations": row.observations,
        "variable": row.variable,
        "candidates": [str(c) for c in row.candidates],
    }


def _patient_ids(args: argparse.Namespace) -> list[str]:
    ids = list(args.patient or ())
    if args.patients_file:
        ids += _patients_file(args.patients_file)
    return ids


def _show_progress(quiet: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(desc=desc, unit="patient", disable=quiet)


def cmd_train(args: argparse.Namespace) -> int:
    """Train, calibrate and validate a checkpoint from the configured sources (the given
    patients, or every patient with a finished stay); nothing is saved unless it learns."""
    from dipro_fhir.evaluation.report import render_text
    from dipro_fhir.training.from_source import train_from_settings

    with _show_progress(args.quiet, "patients read") as bar:

        def read(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        outcome = train_from_settings(
            Settings(),
            _patient_ids(args),
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

    with _show_progress(args.quiet, "patients") as bar:
        record = evaluate_checkpoint(
            Settings(),
            Path(args.checkpoint),
            Path(args.out),
            patient_ids=_patient_ids(args),
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


def cmd_check(args: argparse.Namespace) -> int:
    """Check connectivity and auth to FHIR, DICOMweb and the database, and the checkpoint."""
    from dipro_fhir.checks import run_checks

    results = run_checks(Settings())
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name:10s} {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Create or migrate the results schema (``alembic upgrade head``)."""
    from dipro_fhir import connections
    from dipro_fhir.store.migrate import upgrade_database

    upgrade_database(connections.engine(Settings()), args.revision)
    print(f"results database at revision {args.revision}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic cohort to files, or load it into the configured servers."""
    from tqdm import tqdm

    from dipro_fhir.synth import generate_cohort

    reference = _as_of(args.reference_time)
    start = reference - timedelta(days=args.span_days)
    patients = generate_cohort(args.patients, seed=args.seed, start=start, reference_time=reference)
    with tqdm(total=args.patients, unit="patient", disable=args.quiet) as bar:

        def progress(done: int) -> None:
            bar.update(done - bar.n)

        if args.action == "write":
            from dipro_fhir.synth.load import write_files

            report: Any = write_files(patients, Path(args.out), progress=progress)
        else:
            from dipro_fhir import connections
            from dipro_fhir.synth.load import load_into_servers

            settings = Settings()
            if not settings.dicomweb.base_url:
                raise DiproFhirError("synth load needs DIPRO_DICOMWEB__BASE_URL")
            with connections.fhir_client(settings.fhir) as client:
                report = load_into_servers(
                    patients, client, settings.dicomweb.base_url, progress=progress
                )
    print(
        f"{report.patients} patients, {report.instances} DICOM instances, "
        f"resources: {dict(report.resource_counts)}"
    )
    return 0


def cmd_retract(args: argparse.Namespace) -> int:
    """Retract a model version's results: RiskAssessments entered-in-error, rows marked."""
    from dipro_fhir.retraction import run_retraction
    from dipro_fhir.store.retractions import RetractionRequest

    patients = list(args.patient or ())
    if args.patients_file:
        patients += _patients_file(args.patients_file)
    request = RetractionRequest(
        model_version=args.model_version,
        reason=args.reason,
        since=_as_of(args.since) if args.since else None,
        until=_as_of(args.until) if args.until else None,
        patients=tuple(patients),
        model_name=args.model_name,
    )
    print(json.dumps(run_retraction(Settings(), request), indent=2))
    return 0


def cmd_smart_keys(args: argparse.Namespace) -> int:
    """SMART Backend Services keys: generate or rotate, print or serve the JWKS, remove."""
    import threading

    from dipro_fhir.fhir import smart_keys

    folder = Path(args.dir)
    if args.action in ("jwks", "serve", "remove") and not folder.is_dir():
        raise ConfigError(f"no key folder {folder}: smart keys generate --dir {folder} makes one")
    if args.action in ("generate", "rotate"):
        key = smart_keys.generate_key(folder, args.alg)
        print(
            f"new signing key {key.kid} ({key.algorithm}): {key.private_key_path}", file=sys.stderr
        )
    elif args.action == "remove":
        if not args.kid:
            raise DiproFhirError("smart keys remove needs --kid=KID")
        smart_keys.remove_key(folder, args.kid)
    elif args.action == "serve":
        server = smart_keys.serve_jwks(folder, args.host, args.port, args.path)
        port = server.server_address[1]
        print(f"serving the JWKS at http://{args.host}:{port}{args.path}", flush=True)
        try:
            threading.Event().wait()  # nobody sets it: serve until interrupted
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            server.server_close()
        return 0
    jwks = smart_keys.read_jwks(folder)
    if args.action == "jwks" and not jwks["keys"]:
        print(f"no key in {folder} yet: the JWK Set is empty", file=sys.stderr)
    print(json.dumps(jwks, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: synthetic cohort, demo checkpoint, the nightly DAG, a report."""
    from dipro_fhir.demo import DemoOptions, run_demo

    options = DemoOptions(
        workdir=Path(args.workdir), patients=args.patients, use_airflow=not args.no_airflow
    )
    run_demo(options)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``dipro-fhir``."""
    parser = argparse.ArgumentParser(prog="dipro-fhir", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help=cmd_demo.__doc__)
    demo.add_argument("--workdir", default="var/demo")
    demo.add_argument("--patients", type=int, default=40, help="patients in the scored cohort")
    demo.add_argument("--no-airflow", action="store_true", help="run the steps without Airflow")
    demo.set_defaults(func=cmd_demo)

    score = sub.add_parser("score", help=cmd_score.__doc__)
    score.add_argument("--as-of", help="ISO time (default: now)")
    score.add_argument(
        "--patient", action="append", type=fhir_id, help="score this patient (repeatable)"
    )
    score.add_argument("--group", type=fhir_id, help="score the members of this FHIR Group")
    score.add_argument("--cohort", choices=["active", "new_data"], default="active")
    score.add_argument("--dry-run", action="store_true", help="write nothing")
    score.set_defaults(func=cmd_score)

    extract = sub.add_parser("extract", help=cmd_extract.__doc__)
    extract.add_argument("--as-of", help="ISO time (default: now)")
    extract.add_argument(
        "--patient", action="append", type=fhir_id, help="this patient (repeatable)"
    )
    extract.add_argument("--limit", type=int, help="at most this many patients")
    extract.add_argument("--crop-size", type=int, default=32)
    extract.set_defaults(func=cmd_extract)

    codes = sub.add_parser("codes", help=cmd_codes.__doc__)
    codes.add_argument("--ndjson", help="scan this NDJSON folder instead of the configured source")
    codes.add_argument("--limit", type=int, help="show at most this many codes")
    codes.add_argument("--json", action="store_true", help="print JSON instead of a table")
    codes.set_defaults(func=cmd_codes)

    train = sub.add_parser("train", help=cmd_train.__doc__)
    train.add_argument("--out", required=True, help="new checkpoint folder (absent or empty)")
    train.add_argument("--patient", action="append", type=fhir_id, help="training patient")
    train.add_argument("--patients-file", help="file with one patient id per line")
    train.add_argument("--epochs", type=int, default=40, help="most epochs (default 40)")
    train.add_argument("--name", default="dipro-site", help="the model's name")
    train.add_argument("--version", default="0.1.0")
    train.add_argument("--site", help="the site's label, for the model card")
    train.add_argument("--seed", type=int, default=23)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help=cmd_evaluate.__doc__)
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint folder")
    evaluate.add_argument("--out", required=True, help="folder for evaluation.json and .html")
    evaluate.add_argument("--patient", action="append", type=fhir_id, help="patient to evaluate")
    evaluate.add_argument("--patients-file", help="file with one patient id per line")
    evaluate.add_argument("--site", help="the site's label, for the record")
    evaluate.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    evaluate.add_argument(
        "--record", action="store_true", help="store the result as the checkpoint's validation"
    )
    evaluate.set_defaults(func=cmd_evaluate)

    from dipro_fhir.training.recipe import DemoTraining

    recipe = DemoTraining()
    demo_train = sub.add_parser("train-demo", help=cmd_train_demo.__doc__)
    demo_train.add_argument("--out", required=True, help="new checkpoint folder")
    demo_train.add_argument("--workdir", default="var/train-demo", help="synthetic cohorts")
    demo_train.add_argument("--patients", type=int, default=recipe.patients)
    demo_train.add_argument("--heldout", type=int, default=recipe.heldout)
    demo_train.add_argument("--epochs", type=int, default=recipe.epochs)
    demo_train.set_defaults(func=cmd_train_demo)

    regions = sub.add_parser("regions", help=cmd_regions.__doc__)
    regions.add_argument("folder", help="folder of *.dcm / *.png films (searched recursively)")
    regions.add_argument(
        "--truth", help="COCO JSON of annotated boxes: prints IoU and QC confusion"
    )
    regions.add_argument(
        "--out", default="var/regions", help="overlays, close-ups and regions.json go here"
    )
    regions.add_argument("--locator", help="override DIPRO_IMAGING__LOCATOR")
    regions.set_defaults(func=cmd_regions)

    tl = sub.add_parser("train-locator", help=cmd_train_locator.__doc__)
    tl.add_argument("--coco", required=True, help="COCO JSON of the ten region boxes")
    tl.add_argument("--images", required=True, help="folder the COCO file_name paths are in")
    tl.add_argument(
        "--kind",
        choices=("atlas", "network"),
        default="network",
        help="atlas: region_atlas.npz of the annotated films (seconds); network: the small "
        "BoxNet, region_locator.pt and a model card (minutes)",
    )
    tl.add_argument("--out", required=True, help="folder for the atlas or the weights and card")
    tl.add_argument("--holdout", action="append", help="held-out patient ids (comma list)")
    tl.add_argument("--epochs", type=int, default=150)
    tl.add_argument("--input-size", type=int, default=128)
    tl.add_argument("--seed", type=int, default=0)
    tl.add_argument("--data-note", help="what the data is, for the model card")
    tl.set_defaults(func=cmd_train_locator)

    check = sub.add_parser("check", help=cmd_check.__doc__)
    check.set_defaults(func=cmd_check)

    db = sub.add_parser("db", help="results database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help=cmd_db_upgrade.__doc__)
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=cmd_db_upgrade)

    retract = sub.add_parser("retract", help=cmd_retract.__doc__)
    retract.add_argument("--model-version", required=True, help="the version to retract")
    retract.add_argument("--reason", required=True, help="why (goes to the Provenance)")
    retract.add_argument("--since", help="first as-of time retracted (ISO; inclusive)")
    retract.add_argument("--until", help="as-of times before this are retracted (ISO)")
    retract.add_argument("--patient", action="append", help="only this patient (repeatable)")
    retract.add_argument("--patients-file", help="file with one patient id per line")
    retract.add_argument("--model-name", help="the model's name (default: from the database)")
    retract.set_defaults(func=cmd_retract)

    smart = sub.add_parser("smart", help="SMART Backend Services")
    smart_sub = smart.add_subparsers(dest="smart_command", required=True)
    keys = smart_sub.add_parser("keys", help=cmd_smart_keys.__doc__)
    keys.add_argument("action", choices=["generate", "rotate", "jwks", "remove", "serve"])
    keys.add_argument("--dir", required=True, help="the key folder")
    keys.add_argument("--alg", choices=["RS384", "ES384"], default="RS384")
    keys.add_argument(
        "--kid", help="the key to remove; write --kid=KID, as a kid may begin with '-'"
    )
    keys.add_argument("--host", default="127.0.0.1", help="serve: address to listen on")
    keys.add_argument("--port", type=int, default=8765, help="serve: port (0: any free)")
    keys.add_argument("--path", default="/jwks.json", help="serve: URL path of the JWKS")
    keys.set_defaults(func=cmd_smart_keys)

    synth = sub.add_parser("synth", help=cmd_synth.__doc__)
    synth.add_argument("action", choices=["write", "load"])
    synth.add_argument("--out", default="var/synth", help="folder (write)")
    synth.add_argument("--patients", type=int, default=20)
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument("--reference-time", help="the cohort's 'now' (default: now)")
    synth.add_argument("--span-days", type=float, default=14.0)
    synth.set_defaults(func=cmd_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dipro-fhir``."""
    args = build_parser().parse_args(argv)
    log.configure(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args))
    except DiproFhirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (
        FileNotFoundError,
        FileExistsError,
        PermissionError,
        IsADirectoryError,
        NotADirectoryError,
    ) as exc:  # a path the user gave: the message names it
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
