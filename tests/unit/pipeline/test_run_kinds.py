"""Only nightly runs of the cohort move the watermark and set the baseline; a failed plan is
a recorded failed run.

Before, a two-patient run triggered from the UI moved the ``new_data`` watermark to its own
time (the next ``new_data`` night then skipped other patients' data from between) and became
the next night's data-quality baseline ("patients -7"); a night that failed in ``plan`` left
no row in the results database. Runs here go through :func:`run_locally` (the CLI's path) on
the embedded file sources and database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dipro_fhir.core.errors import ConfigError
from dipro_fhir.core.settings import Settings
from dipro_fhir.run.pipeline import RunRequest, run_locally
from dipro_fhir.run.plan import PIPELINE
from dipro_fhir.store.results import ResultStore
from tests.embedded import cohort_run_settings

AS_OF = datetime(2026, 4, 1, 2, tzinfo=UTC)
MODEL = "kinds"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return cohort_run_settings(tmp_path, AS_OF, patients=5, seed=11, model=MODEL)


def _store(settings: Settings) -> ResultStore:
    return ResultStore(sa.create_engine(settings.store.url.get_secret_value()))


def _runs(settings: Settings) -> dict[str, tuple[str, str]]:
    with _store(settings).engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT dag_run_id, kind, status FROM runs")).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_only_nightly_runs_move_the_watermark_and_are_the_next_nights_baseline(
    settings: Settings,
) -> None:
    night = run_locally(settings, RunRequest(as_of=AS_OF, dag_run_id="night-1"))
    assert night["status"] in ("success", "partial")
    store = _store(settings)
    assert store.watermark(PIPELINE, MODEL) == AS_OF
    first_night = night["run_id"]

    patient = next(iter(_scored_patients(settings)))
    later = AS_OF + timedelta(hours=10)
    manual = run_locally(
        settings, RunRequest(as_of=later, dag_run_id="ui-trigger", patient_ids=(patient,))
    )
    assert manual["status"] == "success"
    # A manual run of the whole cohort and a backfill do not move it either (another as-of
    # time each: runs of one as-of time and cohort converge on one run id).
    run_locally(settings, RunRequest(as_of=later, dag_run_id="ui-cohort", kind="manual"))
    backfill = AS_OF + timedelta(hours=5)
    run_locally(settings, RunRequest(as_of=backfill, dag_run_id="backfill", kind="backfill"))
    assert store.watermark(PIPELINE, MODEL) == AS_OF
    runs = _runs(settings)
    assert runs["ui-trigger"][0] == "manual"  # named patients are never nightly
    assert runs["ui-cohort"][0] == "manual"
    assert runs["backfill"][0] == "backfill"
    assert runs["night-1"][0] == "nightly"

    # The next night compares its data quality with the last nightly run, not the manual one.
    next_night = run_locally(
        settings, RunRequest(as_of=AS_OF + timedelta(days=1), dag_run_id="night-2")
    )
    assert next_night["data_quality"]["compared_with"]["previous_run"] == first_night
    assert store.watermark(PIPELINE, MODEL) == AS_OF + timedelta(days=1)


def _scored_patients(settings: Settings) -> set[str]:
    with _store(settings).engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT DISTINCT patient_id FROM scores")).scalars())


def test_a_plan_that_fails_is_recorded_as_a_failed_run_and_a_retry_supersedes_it(
    settings: Settings,
) -> None:
    broken = settings.model_copy(
        update={"cohort": settings.cohort.model_copy(update={"rule": "group", "group_id": None})}
    )
    with pytest.raises(ConfigError, match="group_id"):
        run_locally(broken, RunRequest(as_of=AS_OF, dag_run_id="night"))
    assert _runs(settings) == {"night": ("nightly", "failed")}
    with _store(settings).engine.connect() as conn:
        failures = conn.execute(
            sa.text("SELECT patient_id, stage, reason, detail, superseded FROM patient_failures")
        ).all()
    assert [tuple(f[1:3]) for f in failures] == [("plan", "plan-failed")]
    assert "group_id" in failures[0][3]

    # The same night planned again (a retry, the setting fixed) converges on the same run.
    summary: dict[str, Any] = run_locally(settings, RunRequest(as_of=AS_OF, dag_run_id="night"))
    assert summary["status"] in ("success", "partial")
    assert _runs(settings) == {"night": ("nightly", summary["status"])}
    with _store(settings).engine.connect() as conn:
        open_plan_failures = conn.execute(
            sa.text("SELECT count(*) FROM patient_failures WHERE stage = 'plan' AND NOT superseded")
        ).scalar()
    assert open_plan_failures == 0


def test_a_dry_run_whose_plan_fails_records_nothing(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"cohort": settings.cohort.model_copy(update={"rule": "group", "group_id": None})}
    )
    with pytest.raises(ConfigError):
        run_locally(broken, RunRequest(as_of=AS_OF, dag_run_id="dry", dry_run=True))
    assert _runs(settings) == {}
