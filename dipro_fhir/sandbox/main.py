"""A local sandbox of the whole stack without Docker: ``dipro-fhir-sandbox up|down|status``
(in a checkout ``bash scripts/sandbox.sh up|down|status``).

``up`` starts, each as a detached process (own session and process group, pid file, log file)
on loopback:

* HAPI FHIR 8.8 (the project's server jar, ``sandbox/servers/hapi``) with an H2 *file*
  database in the sandbox folder, so the FHIR data survives ``down``/``up``;
* Orthanc with the DICOMweb plugin, its own config, storage and index in the sandbox folder;
* Airflow 3 ``api-server``, ``scheduler --skip-serve-logs``, ``dag-processor`` and
  ``triggerer`` (LocalExecutor, metadata database ``<results db>_airflow`` on PostgreSQL,
  ``AIRFLOW_HOME`` in the sandbox folder, the repo's ``dags/``,
  DAGs unpaused);

makes sure PostgreSQL answers on 127.0.0.1:5432 (the machine's cluster; it is shared and never
stopped here), creates and migrates the results database, loads a small synthetic cohort into
HAPI and Orthanc, puts the demo checkpoint in place (trained once with the demo's own trainer
and cached), creates the Airflow connections ``dipro_fhir``, ``dipro_dicomweb``,
``dipro_results_db`` and the pool ``dipro_gpu`` through the REST API, and prints the UI address
and login. Every step is idempotent: a second ``up`` starts only what is not running.

The sandbox folder (``var/sandbox`` by default) holds ``sandbox.json`` (the configuration and
the addresses; tests read it), ``run/*.pid``, ``logs/*.log``, ``hapi/``, ``orthanc/``,
``airflow/``, ``checkpoint/``, ``cohort/truth.jsonl`` (the synthetic ground truth) and
``staging/``. Nothing printed names a patient.

This module holds the commands; the steps are in the modules beside it: ``core``
(configuration, state, processes), ``services`` (PostgreSQL, HAPI, Orthanc), ``cohort``
(checkpoint, synthetic cohort) and ``airflow_services``. They only orchestrate processes and
import ``dipro_fhir`` lazily, inside the steps that load data, migrate the results database
or train the checkpoint.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

from dipro_fhir.sandbox.airflow_services import (
    airflow_environ,
    airflow_settings,
    start_airflow_api,
    start_airflow_scheduling,
    stop_for_changed_settings,
)
from dipro_fhir.sandbox.cohort import ensure_checkpoint, ensure_cohort
from dipro_fhir.sandbox.core import (
    ADMIN,
    COMMAND,
    DAG_ID,
    DEFAULT_DIR,
    SERVICES,
    STATE_FILE,
    VENV_BIN,
    Clock,
    Config,
    Sandbox,
    SandboxError,
    load_sandbox,
    read_pid,
    say,
    stop_groups,
)
from dipro_fhir.sandbox.services import (
    drop_results_db,
    ensure_postgres,
    ensure_results_db,
    fhir_metadata_ok,
    orthanc_ok,
    start_hapi,
    start_orthanc,
    wait_hapi,
)
from dipro_fhir.sandbox.settings import changed_keys, forget_started, merge_env, shell_exports

# --- commands ------------------------------------------------------------------------------


def cmd_up(sandbox: Sandbox) -> int:
    clock = Clock()
    sandbox.root.mkdir(parents=True, exist_ok=True)
    say(f"up in {sandbox.root}")
    sandbox.write_state()
    with clock.step("hapi") as note:
        start_hapi(sandbox, note)  # boots in the background (20-80 s) while the rest runs
    with clock.step("orthanc") as note:
        start_orthanc(sandbox, note)
    with clock.step("postgresql") as note:
        ensure_postgres(sandbox, note)
    with clock.step("results database") as note:
        ensure_results_db(sandbox, note)
    with clock.step("checkpoint") as note:
        ensure_checkpoint(sandbox, note)
    for line in stop_for_changed_settings(sandbox):  # started again just below
        say(line)
    token = start_airflow_api(sandbox, clock)
    with clock.step("hapi ready") as note:
        wait_hapi(sandbox, note)
    with clock.step("synthetic cohort") as note:
        ensure_cohort(sandbox, note)
    start_airflow_scheduling(sandbox, clock, token)
    sandbox.write_state(up_seconds=round(clock.total, 1), steps=dict(clock.steps))
    nights = sandbox.read_state()["cohort"]["nights"]
    say(f"ready in {clock.total:.0f} s")
    print_summary(sandbox, nights)
    return 0


def print_summary(sandbox: Sandbox, nights: Sequence[str]) -> None:
    rel = _relative(sandbox.root)
    lines = [
        f"Airflow UI     {sandbox.airflow_url}   login {ADMIN} / {sandbox.admin_password()}"
        f"   (password file {_relative(sandbox.password_file)})",
        f'DiPro page     {sandbox.airflow_url}/dipro/   ("DiPro" in the UI; docs/ui.md)',
        f"FHIR (HAPI)    {sandbox.fhir_url}",
        f"DICOMweb       {sandbox.dicomweb_url}",
        f"results DB     {sandbox.results_db_url()}",
        f"logs           {rel}/logs/",
        f"tonight        {nights[0]}: the scheduler starts this night's run of {DAG_ID} "
        "on its own (unpaused, schedule 02:00 UTC)",
        f"backfill       {COMMAND} --dir {rel} airflow backfill create "
        f"--dag-id {DAG_ID} --from-date {nights[-1]} --to-date {nights[1]}",
        f'CLI env        eval "$({COMMAND} --dir {rel} env)"; dipro-fhir check',
        f"stop           {COMMAND} --dir {rel} down   (add --purge to delete data)",
    ]
    if sandbox.config.extra_env:
        lines.append(
            f"settings       {', '.join(sorted(sandbox.config.extra_env))} (saved by up --env; "
            f"env prints them; up --env KEY= drops one)"
        )
    for line in lines:
        print(f"  {line}", flush=True)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def cmd_down(sandbox: Sandbox, purge: bool) -> int:
    t0 = time.monotonic()
    groups = {s: pid for s in reversed(SERVICES) if (pid := read_pid(sandbox, s)) is not None}
    outcome = stop_groups(groups)
    for service in SERVICES:
        sandbox.pid_file(service).unlink(missing_ok=True)
        forget_started(sandbox, service)
        say(f"{service}: {outcome.get(service, 'not running')}")
    if purge:
        if sandbox.state_file.exists():
            dropped = drop_results_db(sandbox)
            shutil.rmtree(sandbox.root)
            say(
                f"removed {sandbox.root}"
                + (
                    f" and databases {sandbox.config.results_db}, {sandbox.airflow_db}"
                    if dropped
                    else ""
                )
            )
        elif sandbox.root.exists():
            say(f"not removing {sandbox.root}: it has no {STATE_FILE}, so it is no sandbox")
    else:
        say(f"data kept in {sandbox.root} (down --purge deletes it)")
    say(f"down in {time.monotonic() - t0:.1f} s")
    return 1 if any(v.startswith("killed") for v in outcome.values()) else 0


def cmd_status(sandbox: Sandbox) -> int:
    if not sandbox.state_file.exists():
        say(f"no sandbox in {sandbox.root}")
        return 3

    def airflow_part(part: str) -> bool | None:
        response = requests.get(f"{sandbox.airflow_url}/api/v2/monitor/health", timeout=5)
        if not response.ok:
            return None
        return True if (response.json().get(part) or {}).get("status") == "healthy" else None

    probes: dict[str, Callable[[], bool | None]] = {
        "hapi": lambda: fhir_metadata_ok(sandbox),
        "orthanc": lambda: orthanc_ok(sandbox),
        "airflow-api-server": lambda: airflow_part("metadatabase"),
        "airflow-scheduler": lambda: airflow_part("scheduler"),
        "airflow-dag-processor": lambda: airflow_part("dag_processor"),
    }
    urls = {"hapi": sandbox.fhir_url, "orthanc": sandbox.dicomweb_url,
            "airflow-api-server": sandbox.airflow_url}  # fmt: skip
    all_up = True
    settings, stale = airflow_settings(sandbox), []
    airflow_processes = [s for s in SERVICES if s.startswith("airflow-")]
    for service in SERVICES:
        pid = read_pid(sandbox, service)
        health = ""
        if pid is not None and service in probes:
            try:
                health = "healthy" if probes[service]() else "not answering"
            except requests.RequestException:
                health = "not answering"
        all_up &= pid is not None and health != "not answering"
        running = f"running (pid {pid})" if pid else "stopped"
        print(f"  {service:22s} {running:22s} {health:14s} {urls.get(service, '')}", flush=True)
        if pid is not None and service in airflow_processes:
            changed = changed_keys(sandbox, service, settings)
            if changed is None or changed:
                stale.append(service)
    if stale:
        all_up = False
        print(f"  settings changed since {', '.join(stale)} started: run up to apply them",
              flush=True)  # fmt: skip
    state = sandbox.read_state()
    if all_up and "cohort" in state:
        print_summary(sandbox, state["cohort"]["nights"])
    return 0 if all_up else 3


def cmd_env(sandbox: Sandbox) -> int:
    """Shell lines for ``eval``: the ``dipro-fhir`` CLI on ``PATH``, pointed at the sandbox
    with the settings its Airflow tasks run with (the saved ``up --env`` ones included)."""
    values = {
        "DIPRO_FHIR__BASE_URL": sandbox.fhir_url,
        "DIPRO_DICOMWEB__BASE_URL": sandbox.dicomweb_url,
        "DIPRO_STORE__URL": sandbox.results_db_url(),
        "DIPRO_MODEL__CHECKPOINT": str(sandbox.checkpoint),
        "DIPRO_RUN__AVAILABILITY": "issued",
        "DIPRO_RUN__STAGING_DIR": str(sandbox.path("staging")),
        "DIPRO_AUDIT__ENABLED": "true",
        "DIPRO_IMAGING__LOCATOR": "geometric",  # synthetic films (settings.SYNTHETIC_LOCATOR)
    }
    for line in shell_exports(values, str(VENV_BIN), sandbox.config.extra_env):
        print(line)
    return 0


def cmd_airflow(sandbox: Sandbox, args: Sequence[str]) -> int:
    """Run the ``airflow`` CLI with the sandbox's environment (e.g. ``backfill create``)."""
    if not sandbox.state_file.exists():
        raise SandboxError(f"no sandbox in {sandbox.root}: run up first")
    airflow = str(VENV_BIN / "airflow")
    os.chdir(sandbox.root)
    os.execve(airflow, [airflow, *args], airflow_environ(sandbox))
    return 0  # not reached


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not (key.startswith("DIPRO_") or key.startswith("AIRFLOW__")):
        raise argparse.ArgumentTypeError("expected DIPRO_...=VALUE or AIRFLOW__...=VALUE")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="The dipro-fhir stack as local processes (no Docker): HAPI FHIR, Orthanc, "
        "PostgreSQL, Airflow 3.",
    )
    parser.add_argument("--dir", default=str(DEFAULT_DIR),
                        help="sandbox folder (default: var/sandbox)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything (idempotent)")
    up.add_argument("--hapi-port", type=int, help="default 8080")
    up.add_argument("--orthanc-port", type=int, help="default 8042")
    up.add_argument("--airflow-port", type=int, help="default 8081")
    up.add_argument("--hapi-java-opts", help="JVM options of HAPI (default: the test server's)")
    up.add_argument("--pg-host", help="default 127.0.0.1")
    up.add_argument("--pg-port", type=int, help="default 5432")
    up.add_argument("--results-db", help="results database name (default dipro_sandbox)")
    up.add_argument("--patients", type=int, help="synthetic patients (default 12)")
    up.add_argument("--seed", type=int, help="cohort seed (default 11)")
    up.add_argument("--parallelism", type=int, help="AIRFLOW__CORE__PARALLELISM (default 4)")
    up.add_argument(
        "--chunk-size", type=int, help="DIPRO_RUN__CHUNK_SIZE (default: the project's, 50)"
    )
    up.add_argument("--task-retries", type=int, help="DIPRO_TASK_RETRIES (default 1)")
    up.add_argument(
        "--checkpoint",
        dest="checkpoint_source",
        help="use (copy) this checkpoint folder instead of the demo checkpoint",
    )
    up.add_argument("--env", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                    help="a DIPRO_*/AIRFLOW__* setting for the Airflow processes, saved for "
                    "later ups and applied now (running Airflow processes are restarted); "
                    "KEY= drops a saved one")  # fmt: skip
    down = sub.add_parser("down", help="stop every sandbox process")
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete the sandbox folder and drop the results database",
    )
    sub.add_parser("status", help="what runs, and where")
    sub.add_parser("env", help="print DIPRO_* exports for the dipro-fhir CLI")
    airflow = sub.add_parser("airflow", help="run the airflow CLI in the sandbox's environment")
    airflow.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def configure(args: argparse.Namespace) -> Sandbox:
    """The sandbox the command line names: its saved configuration, with ``up``'s options
    over it and ``up --env`` merged into the saved settings (``KEY=`` drops one)."""
    overrides: dict[str, Any] = {}
    if args.command == "up":
        fields = set(Config.__dataclass_fields__) - {"extra_env"}
        overrides = {name: getattr(args, name) for name in fields if hasattr(args, name)}
    sandbox = load_sandbox(Path(args.dir), overrides)
    if args.command == "up" and args.env:
        sandbox.config.extra_env = merge_env(sandbox.config.extra_env, args.env)
    return sandbox


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sandbox = configure(args)
    try:
        if args.command == "up":
            return cmd_up(sandbox)
        if args.command == "down":
            return cmd_down(sandbox, args.purge)
        if args.command == "status":
            return cmd_status(sandbox)
        if args.command == "env":
            return cmd_env(sandbox)
        return cmd_airflow(sandbox, args.args)
    except SandboxError as error:
        say(f"FAILED: {error}")
        if args.command == "up":
            say(f"logs in {sandbox.path('logs')}; stop what started: {COMMAND} "
                f"--dir {_relative(sandbox.root)} down")  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
