"""The embedded default: the whole nightly job on a synthetic cohort, on this machine.

``dipro-fhir demo`` writes a synthetic cohort as files (FHIR NDJSON + DICOM), trains a demo
checkpoint with the project's own trainer on a second synthetic cohort (its model card says
it is not for clinical use), runs the real ``dipro_nightly`` DAG in-process with
``dag.test()`` against those files (SQLite for results, RiskAssessments as NDJSON), and ends
with a table and an HTML report. Everything lives under ``--workdir``; a second run reuses the
cohort and checkpoint and, the job being idempotent, writes nothing new.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dipro_fhir import connections
from dipro_fhir.errors import ConfigError
from dipro_fhir.settings import Settings, embedded_settings

logger = logging.getLogger(__name__)

#: The demo's fixed "tonight": its logical date, so every demo run is reproducible.
DEMO_AS_OF = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
DEMO_MODEL = "dipro-demo"
DEMO_VERSION = "0.1.0-demo"
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Sizes and switches of the demo."""

    workdir: Path
    patients: int = 40
    train_patients: int = 160
    epochs: int = 20
    seed: int = 7
    use_airflow: bool = True


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - the demo talks to a person


def prepare_cohort(
    folder: Path, n: int, seed: int, reference: datetime | None, prefix: str
) -> None:
    """Write a synthetic cohort into ``folder`` unless it is already there."""
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import write_files

    if (folder / "truth.jsonl").exists():
        return
    # Scoring cohort: admissions over the last 3.5 days, so most patients are still in the
    # ICU tonight. Training cohort: finished stays over the two months before.
    span = 3.5 if reference is not None else 60.0
    start = (reference or DEMO_AS_OF) - timedelta(days=span + (0.5 if reference else 12.0))
    patients = generate_cohort(
        n,
        seed=seed,
        start=start,
        admission_span_days=span,
        reference_time=reference,
        id_prefix=prefix,
    )
    tmp = folder.with_name(folder.name + ".partial")
    write_files(patients, tmp)
    tmp.rename(folder)


def train_from_settings(
    settings: Settings,
    patient_ids: Sequence[str],
    out: Path,
    *,
    epochs: int,
    version: str,
    training_data: str = "patients from the configured FHIR source",
) -> dict[str, float]:
    """Train a small-config checkpoint on ``patient_ids`` from the configured sources."""
    from dipro.config import default_config
    from dipro_fhir.extract import extract_options
    from dipro_fhir.training import collect_examples, train_checkpoint

    config = default_config()
    options = extract_options(settings, crop_size=config.crop_size, max_cxrs=config.max_cxrs)
    items = collect_examples(
        connections.fhir_source(settings),
        connections.image_source(settings.dicomweb),
        patient_ids,
        options,
    )
    return train_checkpoint(
        items,
        out,
        config=config,
        name=DEMO_MODEL,
        version=version,
        training_data=training_data,
        epochs=epochs,
    )


def _patient_ids(cohort: Path) -> list[str]:
    from dipro_fhir.synth import read_truth

    return [t.patient_id for t in read_truth(cohort / "truth.jsonl")]


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
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
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
    prepare_cohort(workdir / "cohort", options.patients, options.seed, DEMO_AS_OF, "synth")
    checkpoint = settings.model.checkpoint
    if not (checkpoint / "model_card.json").exists():
        _say(
            f"2/4 demo checkpoint: {options.train_patients} training patients, "
            f"{options.epochs} epochs"
        )
        train_dir = workdir / "train"
        prepare_cohort(train_dir, options.train_patients, options.seed + 1000, None, "train")
        train_settings = embedded_settings(train_dir.parent).model_copy(
            update={
                "fhir": settings.fhir.model_copy(update={"ndjson_dir": train_dir}),
                "dicomweb": settings.dicomweb.model_copy(update={"folder": train_dir / "dicom"}),
            }
        )
        metrics = train_from_settings(
            train_settings,
            _patient_ids(train_dir),
            checkpoint,
            epochs=options.epochs,
            version=DEMO_VERSION,
            training_data="synthetic ICU cohort generated by dipro_fhir.synth (seeded)",
        )
        _say(
            "   validation: "
            + ", ".join(
                f"{k} {v:.3f}"
                for k, v in sorted(metrics.items())
                if "/" in k and k.split("/")[1] in ("auroc", "accuracy")
            )
        )
    else:
        _say(f"2/4 demo checkpoint: reusing {checkpoint}")
    from dipro_fhir.store.migrate import upgrade_database

    upgrade_database(connections.engine(settings))
    _export(settings)
    _say("3/4 nightly DAG" + (" (Airflow dag.test)" if options.use_airflow else " (in-process)"))
    if options.use_airflow:
        _run_dag(workdir)
    else:
        from dipro_fhir.pipeline import RunRequest, run_locally

        run_locally(settings, RunRequest(as_of=DEMO_AS_OF, dag_run_id="demo"))
    _say("4/4 report")
    from dipro_fhir.report import write_report

    summary = write_report(settings, workdir / "cohort", workdir / "report.html", DEMO_AS_OF)
    _say(summary["table"])
    _say(f"results database : {settings.store.url.get_secret_value()}")
    _say(f"RiskAssessments  : {settings.writeback.ndjson_dir / 'RiskAssessment.ndjson'}")
    _say(f"report           : {workdir / 'report.html'}")
    _say(f"demo finished in {time.perf_counter() - started:.0f} s")
    return summary
