"""The embedded default: the whole nightly job on a synthetic cohort, on this machine.

``dipro-fhir demo`` writes a synthetic cohort as files (FHIR NDJSON + DICOM), puts the demo
checkpoint shipped with the package in place (trained by the project's own trainer on
synthetic patients and validated on a held-out synthetic cohort; its model card says it is
not for clinical use; ``dipro-fhir train-demo`` rebuilds it), runs the real ``dipro_nightly``
DAG with ``airflow dags test`` (``dag.test()``) against those files (SQLite for results,
RiskAssessments as NDJSON), and ends with a table (patients scored, the risk spread per task)
and an HTML report that shows the checkpoint's validation next to the night's risks.
Everything lives under ``--workdir``; a second run reuses the cohort and checkpoint and, the
job being idempotent, writes nothing new.

The terminal gets the demo's own lines only: Airflow's output and the library's INFO logs
go to ``<workdir>/demo.log``, which the demo names; when the DAG fails, the demo says so with
the log's last error line (each failed task ends its log with its message).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dipro_fhir.core.errors import ConfigError, DiproFhirError
from dipro_fhir.core.log import RedactFilter
from dipro_fhir.core.settings import Settings, embedded_settings
from dipro_fhir.core.shipped import dags_folder
from dipro_fhir.run import connections
from dipro_fhir.synth.cohorts import write_cohort_once

logger = logging.getLogger(__name__)

#: The demo's fixed "tonight": its logical date, so every demo run is reproducible.
DEMO_AS_OF = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Sizes and switches of the demo."""

    workdir: Path
    patients: int = 40
    seed: int = 7
    use_airflow: bool = True


#: The log file of a demo run, in its workdir.
LOG_FILE = "demo.log"
# A structlog console line of Airflow: "<time> [error    ] <message> [<logger>] key=value ...".
_ERROR_LINE = re.compile(r"\[error\s*\]\s*(?P<message>.*?)(?:\s+\[[\w.]+\](?:\s.*)?)?$")


class DemoFailed(DiproFhirError):
    """A step of the demo failed; the message names it and where its log is."""


def _say(message: str) -> None:
    print(message, flush=True)


@contextmanager
def _logs_to(log_file: Path) -> Iterator[None]:
    """While the demo runs, INFO records go to ``log_file``; the terminal keeps warnings."""
    root = logging.getLogger()
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactFilter())
    consoles = {
        h: h.level
        for h in root.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    }
    for console in consoles:
        console.setLevel(max(console.level, logging.WARNING))
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for console, level in consoles.items():
            console.setLevel(level)


def last_error(log_text: str) -> str | None:
    """The message of the last error line Airflow logged, or None."""
    for line in reversed(log_text.splitlines()):
        found = _ERROR_LINE.search(line)
        if found and found.group("message"):
            return found.group("message")
    return None


def ensure_demo_checkpoint(checkpoint: Path) -> str:
    """Put the shipped demo checkpoint at ``checkpoint`` unless a readable one is there (an
    older card format, from before validated checkpoints, is replaced); return what was
    done, in words."""
    from dipro_fhir.core.errors import ModelContractError
    from dipro_fhir.scoring.card import read_model_card
    from dipro_fhir.training.demo_checkpoint import copy_packaged

    if (checkpoint / "model_card.json").exists():
        try:
            card = read_model_card(checkpoint)
            return f"reusing {checkpoint} ({card.name} {card.version})"
        except ModelContractError:
            pass  # an outdated checkpoint: replaced by the shipped one below
    copy_packaged(checkpoint)
    shipped = read_model_card(checkpoint)
    patients = shipped.validation["patients"]["examples"]
    return (
        f"{shipped.name} {shipped.version}, shipped with the package (trained by "
        f"`dipro-fhir train-demo`; validated on {patients} held-out synthetic patients)"
    )


def _export(settings: Settings) -> None:
    """Put the embedded settings where the DAG's tasks read them (``DIPRO_*``)."""
    values = {
        "DIPRO_FHIR__NDJSON_DIR": str(settings.fhir.ndjson_dir),
        "DIPRO_DICOMWEB__FOLDER": str(settings.dicomweb.folder),
        "DIPRO_STORE__URL": settings.store.url.get_secret_value(),
        "DIPRO_MODEL__CHECKPOINT": str(settings.model.checkpoint),
        "DIPRO_WRITEBACK__TARGET": settings.writeback.target,
        "DIPRO_WRITEBACK__NDJSON_DIR": str(settings.writeback.ndjson_dir),
        "DIPRO_RUN__STAGING_DIR": str(settings.run.staging_dir),
        "DIPRO_IMAGING__LOCATOR": settings.imaging.locator,
    }
    os.environ.update(values)


def _run_dag(workdir: Path, log_file: Path) -> None:
    """Run ``dipro_nightly`` for the demo night with ``airflow dags test`` (``dag.test()``),
    its output appended to ``log_file``.

    Airflow runs in a child process with its own ``AIRFLOW_HOME`` (SQLite metadata) under the
    workdir: ``dipro_fhir`` itself never imports Airflow.

    Raises:
        DemoFailed: Airflow's database could not be set up, or the run failed (the message
            ends with the log's last error line).
    """
    airflow = Path(sys.executable).with_name("airflow")
    if not airflow.exists():
        raise ConfigError("Airflow is not installed: pip install 'dipro-fhir[airflow]'")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(workdir / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "DIPRO_SCHEDULE": "none",
        "PATH": f"{airflow.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    night = DEMO_AS_OF.isoformat()
    steps = (
        ("airflow db migrate", [str(airflow), "db", "migrate"]),
        ("the nightly DAG", [str(airflow), "dags", "test", "dipro_nightly", night]),
    )
    for what, argv in steps:
        with log_file.open("a", encoding="utf-8") as out:
            out.write(f"\n=== {' '.join(argv[1:])}\n")
            out.flush()
            done = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            reason = last_error(log_file.read_text(encoding="utf-8", errors="replace"))
            raise DemoFailed(
                f"{what} failed" + (f": {reason}" if reason else "") + f" (log: {log_file})"
            )


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the embedded demo end to end; print where the results are and a short table."""
    started = time.perf_counter()
    workdir = options.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = workdir / LOG_FILE
    log_file.write_text(f"dipro-fhir demo {datetime.now(UTC).isoformat()}\n", encoding="utf-8")
    settings = embedded_settings(workdir)
    _say(f"dipro-fhir demo in {workdir}, as of {DEMO_AS_OF.isoformat()}")
    _say("synthetic patients; the demo checkpoint is not for clinical use")
    with _logs_to(log_file):
        summary = _steps(options, workdir, settings, log_file)
    _say("")
    _say(summary["spread"])
    _say("")
    _say(f"report           : {workdir / 'report.html'}  (open it in a browser)")
    _say(f"RiskAssessments  : {settings.writeback.ndjson_dir / 'RiskAssessment.ndjson'}")
    _say(f"results database : {settings.store.url.get_secret_value()}")
    _say(f"log              : {log_file}  (Airflow's output and the details)")
    _say(f"demo finished in {time.perf_counter() - started:.0f} s")
    return summary


def _steps(
    options: DemoOptions, workdir: Path, settings: Settings, log_file: Path
) -> dict[str, Any]:
    """The four steps, one line each; returns the report's summary."""
    cohort = workdir / "cohort"
    reused = cohort.exists()
    write_cohort_once(cohort, options.patients, options.seed, DEMO_AS_OF, "synth")
    _say(
        f"1/4 synthetic cohort: {options.patients} ICU patients as FHIR NDJSON + DICOM"
        + (" (already written)" if reused else "")
    )
    _say("2/4 demo checkpoint: " + ensure_demo_checkpoint(settings.model.checkpoint))
    from dipro_fhir.store.migrate import upgrade_database

    upgrade_database(connections.engine(settings))
    _export(settings)
    t0 = time.perf_counter()
    if options.use_airflow:
        _run_dag(workdir, log_file)
        how = "Airflow dag.test"
    else:
        from dipro_fhir.run.pipeline import RunRequest, run_locally

        run_locally(settings, RunRequest(as_of=DEMO_AS_OF, dag_run_id="demo"))
        how = "in-process"
    _say(f"3/4 nightly DAG dipro_nightly ({how}): done in {time.perf_counter() - t0:.0f} s")
    from dipro_fhir.reports.run_report import write_report

    summary = write_report(settings, cohort, workdir / "report.html", DEMO_AS_OF)
    _say(f"4/4 report: run {summary['run_id']}, status {summary['status']}")
    return summary
