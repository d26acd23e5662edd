"""A score is a claim: a patient with nothing usable in its window is not scored.

Before, a patient in the cohort with no mapped EHR value and no radiograph was scored from
demographics alone (a mortality risk near the network's prior, an empty ``basis``) and
written as a RiskAssessment like any other. Now it is a recorded ``no-usable-data`` failure
of the score stage, with no score row and no RiskAssessment; the other patients of the chunk
are scored as before.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from dipro_fhir.core.settings import embedded_settings
from dipro_fhir.fhir import NdjsonFhirSource
from dipro_fhir.run.pipeline import RunRequest, run_locally
from dipro_fhir.store.migrate import upgrade_database
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import write_files
from tests.checkpoints import write_tiny_checkpoint

AS_OF = datetime(2026, 4, 1, 2, tzinfo=UTC)
EMPTY = "no-data-patient"


def _append(path: Path, resource: dict[str, object]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(resource) + "\n")


def test_a_patient_without_usable_data_gets_a_recorded_reason_and_no_risk_assessment(
    tmp_path: Path,
) -> None:
    cohort = tmp_path / "cohort"
    patients = generate_cohort(
        3, seed=5, start=AS_OF - timedelta(days=3), admission_span_days=2, reference_time=AS_OF
    )
    write_files(patients, cohort, image_size=(96, 96))
    _append(cohort / "Patient.ndjson", {"resourceType": "Patient", "id": EMPTY,
                                        "gender": "female", "birthDate": "1950-05-01"})  # fmt: skip
    _append(
        cohort / "Encounter.ndjson",
        {
            "resourceType": "Encounter",
            "id": f"{EMPTY}-enc",
            "status": "in-progress",
            "class": {"code": "IMP"},
            "subject": {"reference": f"Patient/{EMPTY}"},
            "period": {"start": (AS_OF - timedelta(hours=20)).isoformat()},
        },
    )
    active = {p for p, _ in NdjsonFhirSource(cohort).active_encounter_patients(AS_OF)}
    assert EMPTY in active
    assert len(active) >= 2
    settings = embedded_settings(tmp_path)
    # 1 of this small cohort has no data: above the default 20 % failure share, which is right
    # for a night (a broken map leaving most patients without data must fail it), not here.
    settings = settings.model_copy(
        update={"run": settings.run.model_copy(update={"max_failed_share": 0.5})}
    )
    upgrade_database(settings.store.url.get_secret_value())
    write_tiny_checkpoint(settings.model.checkpoint, name="t", version="1")

    summary = run_locally(settings, RunRequest(as_of=AS_OF, dag_run_id="night-1"))

    engine = sa.create_engine(settings.store.url.get_secret_value())
    with engine.connect() as conn:
        scored = set(conn.execute(sa.text("SELECT DISTINCT patient_id FROM scores")).scalars())
        failures = conn.execute(
            sa.text("SELECT patient_id, stage, reason FROM patient_failures")
        ).all()
    assert EMPTY not in scored
    assert scored == active - {EMPTY}
    assert (EMPTY, "score", "no-usable-data") in failures
    written = [
        json.loads(line)
        for path in (tmp_path / "results").rglob("*.ndjson")
        for line in path.read_text().splitlines()
    ]
    assessments = [r for r in written if r.get("resourceType") == "RiskAssessment"]
    assert assessments
    assert not [r for r in assessments if r["subject"]["reference"] == f"Patient/{EMPTY}"]
    assert summary["status"] == "partial"
    assert summary["failure_reasons"] == {"no-usable-data": 1}


def test_a_night_with_no_patient_is_stored_as_empty_and_never_reported_as_success(
    tmp_path: Path,
) -> None:
    import pytest

    from dipro_fhir.run.finalize import EmptyRun

    cohort = tmp_path / "cohort"
    patients = generate_cohort(2, seed=5, start=AS_OF - timedelta(days=3), reference_time=AS_OF)
    write_files(patients, cohort, image_size=(96, 96))
    settings = embedded_settings(tmp_path)
    upgrade_database(settings.store.url.get_secret_value())
    write_tiny_checkpoint(settings.model.checkpoint, name="t", version="1")
    long_before = AS_OF - timedelta(days=400)  # nobody was admitted then

    with pytest.raises(EmptyRun, match="scored nobody"):
        run_locally(settings, RunRequest(as_of=long_before, dag_run_id="empty-night"))

    engine = sa.create_engine(settings.store.url.get_secret_value())
    with engine.connect() as conn:
        status, finished = conn.execute(
            sa.text("SELECT status, finished_at FROM runs WHERE dag_run_id = 'empty-night'")
        ).one()
        quality = conn.execute(sa.text("SELECT kind, count FROM data_quality")).all()
        watermarks = conn.execute(sa.text("SELECT count(*) FROM watermarks")).scalar()
    assert status == "empty"
    assert finished is not None
    assert ("patients", 0) in quality
    assert watermarks == 0
