"""The ``dipro-fhir`` command: the demo, scoring runs, training, checks and utilities.

Every subcommand builds :class:`~dipro_fhir.core.settings.Settings` once (from ``DIPRO_*``
environment variables, or the embedded default under ``--workdir``) and calls library code;
nothing here holds logic the DAGs would not also run. This module holds the parser and the
entry point; the ``cmd_*`` functions live in the ``*_commands`` modules beside it, grouped by
what a user does.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from dipro_fhir.cli.arguments import fhir_id
from dipro_fhir.cli.cds_commands import cmd_cds_serve
from dipro_fhir.cli.image_commands import cmd_regions, cmd_train_locator
from dipro_fhir.cli.model_commands import cmd_evaluate, cmd_train, cmd_train_demo
from dipro_fhir.cli.monitor_commands import cmd_monitor
from dipro_fhir.cli.run_commands import (
    cmd_check,
    cmd_codes,
    cmd_db_upgrade,
    cmd_demo,
    cmd_extract,
    cmd_retract,
    cmd_score,
)
from dipro_fhir.cli.setup_commands import cmd_smart_keys, cmd_synth
from dipro_fhir.core import log
from dipro_fhir.core.errors import DiproFhirError
from dipro_fhir.core.settings import settings_error

logger = logging.getLogger("dipro_fhir.cli")


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
    score.add_argument(
        "--kind",
        choices=["nightly", "manual", "backfill"],
        default="nightly",
        help="what started the run (default nightly; named patients or a Group are always "
        "manual): only nightly runs move the new_data watermark and set the baseline",
    )
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

    monitor = sub.add_parser("monitor", help=cmd_monitor.__doc__)
    monitor.add_argument(
        "action",
        nargs="?",
        choices=["run", "reference"],
        default="run",
        help="run (default): the night's monitor; reference: write a checkpoint's input "
        "reference into its model card",
    )
    monitor.add_argument("--as-of", help="the night (ISO time; default: now)")
    monitor.add_argument("--out", default="var/monitor", help="folder for the report")
    monitor.add_argument(
        "--report-only", action="store_true", help="gather and compute nothing: report only"
    )
    monitor.add_argument("--checkpoint", help="reference: the checkpoint folder")
    monitor.add_argument("--patient", action="append", type=fhir_id, help="reference: patient")
    monitor.add_argument("--patients-file", help="reference: one patient id per line")
    monitor.add_argument("--site", help="reference: what the patients are, in words")
    monitor.add_argument(
        "--demo-heldout",
        type=int,
        metavar="N",
        help="reference: read N patients of the demo checkpoint's held-out synthetic cohort",
    )
    monitor.add_argument(
        "--workdir", default="var/monitor-reference", help="reference: where that cohort goes"
    )
    monitor.set_defaults(func=cmd_monitor)

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

    cds = sub.add_parser("cds-hooks", help="the CDS Hooks service (docs/cds-hooks.md)")
    cds_sub = cds.add_subparsers(dest="cds_command", required=True)
    serve = cds_sub.add_parser("serve", help=cmd_cds_serve.__doc__)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8090, help="port (default 8090)")
    serve.set_defaults(func=cmd_cds_serve)

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
    except ValidationError as exc:  # a DIPRO_* variable that does not parse
        print(f"error: {settings_error(exc)}", file=sys.stderr)
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
