"""An embedded run's settings over a small synthetic cohort (NDJSON and DICOM files, SQLite,
results as NDJSON), for tests that run :func:`~dipro_fhir.run.pipeline.run_locally`."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from dipro_fhir.core.settings import Settings, embedded_settings
from dipro_fhir.store.migrate import upgrade_database
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import write_files
from tests.checkpoints import write_tiny_checkpoint


def cohort_run_settings(
    tmp_path: Path, as_of: datetime, *, patients: int, seed: int, model: str = "t"
) -> Settings:
    """Settings of a run over ``patients`` synthetic patients admitted in the three days
    before ``as_of``, with a migrated database, a tiny checkpoint named ``model`` and no
    failure limit (a small cohort's one unusable patient must not fail the run)."""
    cohort = tmp_path / "cohort"
    people = generate_cohort(
        patients, seed=seed, start=as_of - timedelta(days=3), admission_span_days=2,
        reference_time=as_of,
    )  # fmt: skip
    write_files(people, cohort, image_size=(96, 96))
    settings = embedded_settings(tmp_path)
    settings = settings.model_copy(
        update={
            "fhir": settings.fhir.model_copy(update={"ndjson_dir": cohort}),
            "run": settings.run.model_copy(update={"max_failed_share": 1.0}),
        }
    )
    upgrade_database(settings.store.url.get_secret_value())
    write_tiny_checkpoint(settings.model.checkpoint, name=model, version="1")
    return settings
