"""A whole scoring run logs no patient data: no ids, names, birth dates, MRNs or UIDs.

The run goes through every step (plan, extract, score, write-back, finalize) on the file
sources, with every logger at DEBUG, and each record's rendered message is searched for the
identifying values of every patient in the cohort.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from dipro_fhir.core.settings import StoreSettings, embedded_settings
from dipro_fhir.run.pipeline import RunRequest, run_locally
from dipro_fhir.store.migrate import upgrade_database
from dipro_fhir.synth import generate_cohort, read_truth
from dipro_fhir.synth.load import write_files
from tests.checkpoints import write_tiny_checkpoint

AS_OF = datetime(2026, 2, 1, 2, tzinfo=UTC)


def _identifiers(cohort: Path) -> set[str]:
    found: set[str] = set()
    for line in (cohort / "Patient.ndjson").read_text().splitlines():
        patient = json.loads(line)
        found.add(patient["id"])
        found.update(i["value"] for i in patient.get("identifier", []))
        found.add(patient["birthDate"])
        for name in patient.get("name", []):
            found.update(name.get("given", []))
            found.add(name["family"])
    for truth in read_truth(cohort / "truth.jsonl"):
        found.update(i.study_uid for i in truth.images)
        found.update(i.instance_uid for i in truth.images)
    return {value for value in found if len(value) >= 4}


def test_a_full_run_logs_no_patient_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cohort = tmp_path / "cohort"
    patients = generate_cohort(
        4, seed=9, start=AS_OF - timedelta(days=3), admission_span_days=2, reference_time=AS_OF
    )
    write_files(patients, cohort, image_size=(128, 128))
    settings = embedded_settings(tmp_path)
    settings = settings.model_copy(
        update={"store": StoreSettings(url=SecretStr(f"sqlite:///{tmp_path / 'r.sqlite'}"))}
    )
    upgrade_database(settings.store.url.get_secret_value())
    write_tiny_checkpoint(settings.model.checkpoint, name="t", version="1")
    with caplog.at_level(logging.DEBUG):
        summary = run_locally(settings, RunRequest(as_of=AS_OF, dag_run_id="phi-test"))
    assert summary["scored"] >= 2  # the run really did the work
    secrets = _identifiers(cohort)
    assert len(secrets) > 20
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) > 10
    leaks = {s for s in secrets for m in messages if s in m}
    assert not leaks, f"patient data in logs: {sorted(leaks)[:5]}"
