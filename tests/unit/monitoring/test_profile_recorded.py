"""A nightly run records its scored patients' input profile (counts only) beside its data
quality: what the monitor measures drift on, before any outcome is known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from dipro_fhir.core.settings import embedded_settings
from dipro_fhir.mapping.profile import InputProfile
from dipro_fhir.run.pipeline import RunRequest, run_locally
from dipro_fhir.store.migrate import upgrade_database
from dipro_fhir.store.monitoring import nightly_runs
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import write_files
from tests.checkpoints import write_tiny_checkpoint

AS_OF = datetime(2026, 4, 1, 2, tzinfo=UTC)


def test_a_nightly_run_records_the_input_profile_of_its_scored_patients(tmp_path: Path) -> None:
    people = list(generate_cohort(6, seed=11, start=AS_OF - timedelta(days=3),
                                  admission_span_days=2, reference_time=AS_OF))  # fmt: skip
    write_files(people, tmp_path / "cohort", image_size=(96, 96))
    settings = embedded_settings(tmp_path)
    settings = settings.model_copy(
        update={"writeback": settings.writeback.model_copy(update={"shadow": True})}
    )
    upgrade_database(settings.store.url.get_secret_value())
    write_tiny_checkpoint(settings.model.checkpoint)

    summary = run_locally(settings, RunRequest(as_of=AS_OF, dag_run_id="night"))

    engine = sa.create_engine(settings.store.url.get_secret_value())
    (run,) = nightly_runs(engine)
    profile = InputProfile.from_json(run.profile)
    assert profile.patients == summary["scored"] > 0
    assert profile.coverage("heart_rate") == 1.0
    assert sum(profile.histogram("heart_rate")) == profile.patients
    assert profile.films_used + sum(profile.films_unusable.values()) > 0
    assert profile.observations > 0
    text = str(run.profile)
    assert not any(p.patient_id in text for p in people)
