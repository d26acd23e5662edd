"""Bulkheads: a defect met with one patient fails that patient only; an outage fails the
chunk, and finalize still records every patient (the CLI's path, :func:`run_locally`).

The defects are injected by replacing one internal function with a wrapper that raises for
one chosen patient (a stand-in for a bug, not for a server); the sources are the real file
implementations.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dipro_fhir.core.settings import DicomWebSettings, RunSettings, Settings, embedded_settings
from dipro_fhir.run import pipeline
from dipro_fhir.store.migrate import upgrade_database
from tests.checkpoints import write_tiny_checkpoint

AS_OF = datetime(2026, 2, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import write_files

    out = tmp_path_factory.mktemp("cohort") / "cohort"
    people = generate_cohort(
        6, seed=8, start=AS_OF - timedelta(days=3), admission_span_days=2, reference_time=AS_OF
    )
    write_files(people, out, image_size=(96, 96))
    return out


def _settings(tmp_path: Path, cohort: Path, **run: Any) -> Settings:
    settings = embedded_settings(tmp_path)
    settings = settings.model_copy(
        update={
            "fhir": settings.fhir.model_copy(update={"ndjson_dir": cohort}),
            "dicomweb": DicomWebSettings(folder=cohort / "dicom"),
            "run": RunSettings(
                staging_dir=str(tmp_path / "staging"), chunk_size=3, log_salt=SecretStr("t"), **run
            ),
        }
    )
    upgrade_database(settings.store.url.get_secret_value())
    write_tiny_checkpoint(settings.model.checkpoint, name="b", version="1")
    return settings


def _failures(settings: Settings) -> dict[str, tuple[str, str, str]]:
    engine = sa.create_engine(settings.store.url.get_secret_value())
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT patient_id, stage, reason, reason_class FROM patient_failures")
        ).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


@pytest.mark.parametrize("stage", ["extract", "score", "writeback"])
def test_a_defect_with_one_patient_fails_only_that_patient(
    cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    import dipro_fhir.run.extract as extract
    import dipro_fhir.scoring.scorer as scorer
    import dipro_fhir.writeback.write as write

    settings = _settings(tmp_path, cohort)
    plan = pipeline.plan_run(settings, pipeline.RunRequest(as_of=AS_OF, dag_run_id="probe"))
    patients = [p for m in plan for p, _ in m["patients"]]
    victim = patients[1]

    def breaking(original: Any, patient_of: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if patient_of(*args) == victim:
                raise KeyError("a defect")  # message text never reaches the record
            return original(*args, **kwargs)

        return wrapper

    if stage == "extract":
        monkeypatch.setattr(extract, "_extract", breaking(extract._extract, lambda *a: a[2]))
    elif stage == "score":
        original = scorer.score_timelines
        monkeypatch.setattr(
            "dipro_fhir.scoring.scorer.score_timelines",
            breaking(
                original,
                lambda m, t, *a: victim if any(x.patient_id == victim for x in t) else None,
            ),
        )
    else:
        monkeypatch.setattr(
            write,
            "to_risk_assessment",
            breaking(write.to_risk_assessment, lambda group, *a: group[0].patient_id),
        )
    summary = pipeline.run_locally(settings, pipeline.RunRequest(as_of=AS_OF, dag_run_id="x"))
    failures = _failures(settings)
    assert failures == {victim: (stage, "internal-error", "internal")}
    assert summary["failed_patients"] == 1
    assert summary["failure_classes"] == {"internal": 1}
    assert summary["patients"] == len(patients)
    assert summary["status"] == "partial"


def test_an_outage_fails_the_chunk_and_finalize_records_every_patient(
    cohort: Path, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, cohort, outage_after=2, max_failed_share=1.0)
    down = DicomWebSettings(base_url="http://127.0.0.1:9/dicom-web", max_retries=0, timeout_s=2)
    settings = settings.model_copy(update={"dicomweb": down})
    summary = pipeline.run_locally(settings, pipeline.RunRequest(as_of=AS_OF, dag_run_id="x"))
    failures = _failures(settings)
    assert summary["lost"] >= 1  # at least one chunk failed whole
    assert summary["failed_patients"] == summary["patients"] == len(failures) > 0
    assert {c for _, _, c in failures.values()} == {"retriable"}
    assert summary["failure_classes"] == {"retriable": summary["patients"]}
