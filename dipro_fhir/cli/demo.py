"""The embedded default: the whole nightly job on a synthetic cohort, on this machine.

``dipro-fhir demo`` writes a synthetic cohort as files (FHIR NDJSON + DICOM), puts the demo
checkpoint shipped with the package in place (trained by the project's own trainer on
synthetic patients and validated on a held-out synthetic cohort; its model card says it is
not for clinical use; ``dipro-fhir train-demo`` rebuilds it), runs the real ``dipro_nightly``
DAG in-process with ``dag.test()`` against those files (SQLite for results, RiskAssessments
as NDJSON), and ends with a table and an HTML report that shows the checkpoint's validation
next to the night's risks. Everything lives under ``--workdir``; a second run reuses the
cohort and checkpoint and, the job being idempotent, writes nothing new.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dipro_fhir.core.errors import ConfigError
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


def _say(message: str) -> None:
    print(message, flush=True)


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


def _run_dag(workdir: Path) -> None:
    """Run ``dipro_nightly`` for the demo night with ``airflow dags test`` (``dag.test()``).

    Airflow runs in a child process with its own ``AIRFLOW_HOME`` (SQLite metadata) under the
    workdir: ``dipro_fhir`` itself never imports Airflow.
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
    subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run(
        [str(airflow), "dags", "test", "dipro_nightly", DEMO_AS_OF.isoformat()],
        env=env,
        check=True,
    )


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the embedded demo end to end; print where the results are and a short table."""
    started = time.perf_counter()
    workdir = options.workdir.resolve()
    settings = embedded_settings(workdir)
    _say(f"dipro-fhir demo in {workdir} (as of {DEMO_AS_OF.isoformat()})")
    _say(f"1/4 synthetic cohort: {options.patients} ICU patients as FHIR NDJSON + DICOM")
    write_cohort_once(workdir / "cohort", options.patients, options.seed, DEMO_AS_OF, "synth")
    _say("2/4 demo checkpoint: " + ensure_demo_checkpoint(settings.model.checkpoint))
    from dipro_fhir.store.migrate import upgrade_database

    upgrade_database(connections.engine(settings))
    _export(settings)
    _say("3/4 nightly DAG" + (" (Airflow dag.test)" if options.use_airflow else " (in-process)"))
    if options.use_airflow:
        _run_dag(workdir)
    else:
        from dipro_fhir.run.pipeline import RunRequest, run_locally

        run_locally(settings, RunRequest(as_of=DEMO_AS_OF, dag_run_id="demo"))
    _say("4/4 report")
    from dipro_fhir.reports.run_report import write_report

    summary = write_report(settings, workdir / "cohort", workdir / "report.html", DEMO_AS_OF)
    _say(summary["table"])
    _say(f"results database : {settings.store.url.get_secret_value()}")
    _say(f"RiskAssessments  : {settings.writeback.ndjson_dir / 'RiskAssessment.ndjson'}")
    _say(f"report           : {workdir / 'report.html'}")
    _say(f"demo finished in {time.perf_counter() - started:.0f} s")
    return summary
