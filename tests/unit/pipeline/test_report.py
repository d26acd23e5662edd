"""The demo report: a table of every scored patient and three inline SVG plots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dipro_fhir.core.settings import embedded_settings
from dipro_fhir.reports.run_report import write_report
from dipro_fhir.run.pipeline import RunRequest, run_locally
from dipro_fhir.store.migrate import upgrade_database
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import write_files
from tests.checkpoints import write_tiny_checkpoint

AS_OF = datetime(2026, 4, 1, 2, tzinfo=UTC)


def test_report_lists_scored_patients_draws_three_plots_and_shows_the_validation(
    tmp_path: Path,
) -> None:
    patients = generate_cohort(
        5, seed=3, start=AS_OF - timedelta(days=3), admission_span_days=2, reference_time=AS_OF
    )
    write_files(patients, tmp_path / "cohort", image_size=(128, 128))
    settings = embedded_settings(tmp_path)
    upgrade_database(settings.store.url.get_secret_value())
    write_tiny_checkpoint(settings.model.checkpoint, name="t", version="1")
    summary = run_locally(settings, RunRequest(as_of=AS_OF, dag_run_id="report-test"))
    out = tmp_path / "report.html"
    report = write_report(settings, tmp_path / "cohort", out, AS_OF)
    text = out.read_text()
    assert report["status"] == "success"
    assert report["patients"] == summary["scored"] > 0
    assert text.count("<svg") == 3
    assert text.count("synth-0000") >= summary["scored"]
    assert "not for clinical use" in text
    # The checkpoint's held-out figures next to its baselines, not just tonight's risks.
    assert "The checkpoint&#x27;s validation on" in text or "The checkpoint's validation on" in text
    assert "Logistic regression on EHR summaries" in text
    assert "mortality ECE" in text


def test_a_run_on_a_database_without_schema_says_how_to_fix_it(tmp_path: Path) -> None:
    from dipro_fhir.core.errors import ConfigError

    patients = generate_cohort(
        2, seed=3, start=AS_OF - timedelta(days=3), admission_span_days=2, reference_time=AS_OF
    )
    write_files(patients, tmp_path / "cohort", image_size=(64, 64))
    settings = embedded_settings(tmp_path)
    write_tiny_checkpoint(settings.model.checkpoint)
    with pytest.raises(ConfigError, match="dipro-fhir db upgrade"):
        run_locally(settings, RunRequest(as_of=AS_OF, dag_run_id="no-schema"))
