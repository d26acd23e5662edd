"""The nightly DiPro scoring DAG: plan -> per-chunk extract / score / write back -> finalize.

The DAG only wires the stage bodies of a run, one module per stage (``dipro_fhir.run.plan``,
``.extract_stage``, ``.score_stage``, ``.writeback_stage``, ``.finalize``; tied together in
:mod:`dipro_fhir.run.pipeline`); they are imported inside the tasks, so parsing this file
loads neither torch nor pydicom. See ``doc_md`` below (shown in the Airflow UI) for the
parameters, configuration and backfills.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from _dipro_bulk import BulkExportOperator
from _dipro_common import DagOptions, build_settings
from _dipro_failure import FAILURE_CALLBACKS
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

OPTIONS = DagOptions.from_environ()
DESCRIPTION = (
    "DiPro risk scores for ICU patients: FHIR R4 + DICOMweb chest X-rays in, one FHIR "
    "RiskAssessment per patient and task and rows in the results database out"
)
ISO_DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"

DOC_MD = f"""
# dipro_nightly

Scores a cohort with the DiPro model as of one point in time and writes one FHIR
`RiskAssessment` per patient and task, plus result rows in PostgreSQL.

**Steps.** `plan` chooses the cohort and splits it into chunks; `bulk_export` (in
`extraction_mode` `bulk`) exports the cohort with FHIR Bulk Data `$export` into the staging
area, waiting deferred in the triggerer (no worker slot held); per chunk (dynamic task
mapping) `extract` (FHIR + DICOMweb -> timelines), `score` (the network; queue
`{OPTIONS.gpu_queue}`, pool `{OPTIONS.gpu_pool or "default_pool"}`) and `write_back`; then
`finalize` records the run summary. `plan` and the chunk tasks retry {OPTIONS.retries} times
with exponential backoff; a plan that still fails is recorded as a failed run. `finalize`
runs even when a chunk task failed for good: it records those chunks' patients as failed,
writes the summary, and then fails the run. A night whose cohort has no
patient scores nobody: it is recorded with status `empty` and the run fails, so a night that
did nothing never shows as a success.

**Validation gate and shadow mode.** `plan` refuses a checkpoint whose model card has no
validation on held-out patients, or whose figures fail the site's minimums
(`DIPRO_MODEL__MIN_MORTALITY_AUROC` ...): the task fails with one line naming the figure.
With `DIPRO_WRITEBACK__SHADOW=true` scores go to the results database only, never to FHIR.

**Run kinds.** A scheduled run is `nightly`; a run triggered from the UI or the API is
`manual`, a backfill `backfill` (column `runs.kind`). Only nightly runs of the whole cohort
move the `new_data` watermark and are the next night's data-quality baseline.

**As-of time.** The run's logical date (for a manual run without one, the time it was
triggered), unless the `as_of` parameter overrides it. Nothing dated or made available after
it is used, so a run depends only on its logical date.

**Parameters** (trigger form; every one is optional, and an empty form scores the active
cohort as of the run's logical date):

- `patient_ids` (list of FHIR ids, one per line, default none): score exactly these
  patients (overrides `cohort`).
- `group_id` (FHIR id): score the members of this FHIR `Group` (overrides `cohort`).
- `as_of` (ISO 8601 date-time): override the as-of time; without an offset it is read in
  `DIPRO_RUN__SITE_TIMEZONE`.
- `cohort` (`active` or `new_data`, default `active`): encounters under way at `as_of`, or
  patients with new data since the last successful nightly run.
- `model_version` (string): refuse to run unless the checkpoint has this version.
- `dry_run` (boolean, default false): extract and score, write nothing.
- `extraction_mode` (`rest` or `bulk`; empty: the site's `DIPRO_RUN__EXTRACTION_MODE`,
  default `rest`): FHIR searches per chunk, or one Bulk Data `$export` of the cohort
  (`Group/[id]/$export` with `_since`; `DIPRO_FHIR__BULK_LEVEL=system` for a sandbox server).

An id is 1-64 characters of `A-Z a-z 0-9 - .` (FHIR R4 `id`); `plan` checks them and fails
with one line naming the parameter (never the id) before anything is read or scored.

**A failed task** ends its log with one error line, `<task> failed: <the message>`, after the
traceback: the log view opens at the bottom, on it.

**Backfills** use this DAG: each run depends only on its logical date, so
`airflow backfill create --dag-id dipro_nightly --from-date 2025-01-01T02:00:00Z
--to-date 2025-01-07T02:00:00Z` (with the times: a bare date is midnight) reproduces those
nights (`max_active_runs` is 1: one night at a time). Re-running a night
converges on the same run id and writes nothing new.

**Configuration.** Endpoints come from the `DIPRO_*` environment
(`DIPRO_FHIR__BASE_URL`, `DIPRO_DICOMWEB__BASE_URL`, `DIPRO_STORE__URL`, ...) and, when they
exist, from the Airflow connections `dipro_fhir`, `dipro_dicomweb` and `dipro_results_db`.
Parse-time options: `DIPRO_SCHEDULE` (cron, `none` for manual only; now
`{OPTIONS.schedule}` in {OPTIONS.timezone}), `DIPRO_SCHEDULE_TIMEZONE`, `DIPRO_GPU_QUEUE`,
`DIPRO_GPU_POOL` (must exist as an Airflow pool), `DIPRO_TASK_RETRIES`, `DIPRO_RETRY_DELAY_S`.
"""

# Chunk tasks retry with exponential backoff: the delay doubles on each retry.
RETRIES, RETRY_DELAY, BACKOFF = OPTIONS.retries, OPTIONS.retry_delay, 2.0


def _run_kind(dag_run: Any) -> Any:
    """``nightly`` for a run of the schedule, ``backfill`` for a backfill, else ``manual``
    (a trigger from the UI or the API): only nightly runs move the watermark."""
    run_type = getattr(dag_run, "run_type", None)
    value = str(getattr(run_type, "value", run_type) or "")
    return {"scheduled": "nightly", "backfill": "backfill"}.get(value, "manual")


@dag(
    dag_id="dipro_nightly",
    schedule=None
    if OPTIONS.schedule is None
    else CronTriggerTimetable(OPTIONS.schedule, timezone=OPTIONS.timezone),
    # Any night may be scored or backfilled: Airflow runs no task for a logical date before
    # start_date (and calls that run a success), so it lies before any data.
    start_date=datetime(1970, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    description=DESCRIPTION,
    doc_md=DOC_MD,
    tags=["dipro", "fhir", "scoring"],
    render_template_as_native_obj=True,
    default_args=FAILURE_CALLBACKS,
    # Every parameter may be left empty ("null" in a type makes the form's field optional);
    # ids are checked by `plan` (dipro_fhir.run.trigger), which says in one line what is wrong.
    params={
        "patient_ids": Param(
            [],
            type=["null", "array"],
            items={"type": "string"},
            description="Score exactly these Patient ids, one per line (overrides cohort). "
            "An id is 1-64 characters of A-Z a-z 0-9 - .",
        ),
        "group_id": Param(
            None,
            type=["null", "string"],
            description="Score the members of this FHIR Group, by its id (overrides cohort).",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date-time",
            pattern=ISO_DATE_TIME,
            description="Score as of this time instead of the run's logical date (ISO 8601).",
        ),
        "cohort": Param(
            "active",
            type=["null", "string"],
            enum=[None, "active", "new_data"],
            values_display={
                "null": "active (the default)",
                "active": "active: encounters under way at the as-of time",
                "new_data": "new_data: patients with new data since the last nightly run",
            },
            description="Who is scored when no patient_ids or group_id are given.",
        ),
        "model_version": Param(
            None,
            type=["null", "string"],
            minLength=1,
            description="Refuse to run unless the checkpoint has this version.",
        ),
        "dry_run": Param(
            False,
            type=["null", "boolean"],
            description="Extract and score, but write nothing (no RiskAssessment, no rows).",
        ),
        "extraction_mode": Param(
            None,
            type=["null", "string"],
            enum=[None, "rest", "bulk"],
            values_display={
                "null": "the site's setting (DIPRO_RUN__EXTRACTION_MODE, rest unless set)",
                "rest": "rest: FHIR searches per chunk",
                "bulk": "bulk: one FHIR Bulk Data $export of the cohort",
            },
            description="How the FHIR data is read.",
        ),
    },
)
def dipro_nightly() -> None:
    """Wire the steps; the bodies are the stage functions of :mod:`dipro_fhir.run.pipeline`."""

    @task(
        retries=RETRIES,
        retry_delay=RETRY_DELAY,
        retry_exponential_backoff=BACKOFF,
        max_retry_delay=OPTIONS.max_retry_delay,
    )
    def plan() -> list[dict[str, Any]]:
        from dipro_fhir.core.errors import ConfigError, ModelContractError
        from dipro_fhir.run.plan import plan_run
        from dipro_fhir.run.trigger import run_request_from_params

        context = get_current_context()
        dag_run = context["dag_run"]
        settings = build_settings()
        try:
            request = run_request_from_params(
                context["params"],
                logical_date=context.get("logical_date") or dag_run.run_after,
                dag_run_id=context["run_id"],
                kind=_run_kind(dag_run),
                site_timezone=settings.run.site_timezone,
            )
            manifests = plan_run(settings, request)
        except (ModelContractError, ConfigError) as exc:  # a retry would fail the same way
            raise AirflowFailException(str(exc)) from None
        return [_stash(settings, m, "plan") for m in manifests]

    @task(
        retries=RETRIES,
        retry_delay=RETRY_DELAY,
        retry_exponential_backoff=BACKOFF,
        max_retry_delay=OPTIONS.max_retry_delay,
    )
    def extract(manifest: dict[str, Any]) -> dict[str, Any]:
        from dipro_fhir.run.extract_stage import extract_chunk

        settings = build_settings()
        done = extract_chunk(settings, _unstash(manifest))
        return _stash(settings, done, "extract")

    @task(
        queue=OPTIONS.gpu_queue,
        pool=OPTIONS.gpu_pool,
        retries=RETRIES,
        retry_delay=RETRY_DELAY,
        retry_exponential_backoff=BACKOFF,
        max_retry_delay=OPTIONS.max_retry_delay,
    )
    def score(manifest: dict[str, Any]) -> dict[str, Any]:
        from dipro_fhir.run.score_stage import score_chunk

        settings = build_settings()
        done = score_chunk(settings, _unstash(manifest))
        return _stash(settings, done, "score")

    @task(
        retries=RETRIES,
        retry_delay=RETRY_DELAY,
        retry_exponential_backoff=BACKOFF,
        max_retry_delay=OPTIONS.max_retry_delay,
    )
    def write_back(manifest: dict[str, Any]) -> dict[str, Any]:
        from dipro_fhir.run.writeback_stage import write_back_chunk

        settings = build_settings()
        done = write_back_chunk(settings, _unstash(manifest))
        return _stash(settings, done, "writeback")

    @task(
        trigger_rule="all_done",
        retries=RETRIES,
        retry_delay=RETRY_DELAY,
        retry_exponential_backoff=BACKOFF,
        max_retry_delay=OPTIONS.max_retry_delay,
    )
    def finalize(
        planned: Sequence[dict[str, Any]] | None,
        extracted: Sequence[dict[str, Any]] | None,
        scored: Sequence[dict[str, Any]] | None,
        written: Sequence[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        from dipro_fhir.run.finalize import RunFailed, fail_chunk, finalize_run

        if planned is None:  # plan failed: no run was recorded, there is nothing to summarise
            raise AirflowFailException("the plan task failed; nothing was scored")
        # A mapped task instance that failed for good pushed no XCom: it is absent here.
        # Slicing reads a lazy XCom sequence in one request; iterating it probes one index
        # past the end and logs a spurious "XCom not found" error.
        finished = [_unstash(r) for r in written[:]] if written else []
        stages = {
            "extract": _indexes(extracted[:] if extracted else ()),
            "score": _indexes(scored[:] if scored else ()),
        }
        done = _indexes(finished)
        lost = [m for m in planned[:] if m["index"] not in done]
        failed = [
            fail_chunk(
                _unstash(m),
                next((s for s, ok in stages.items() if m["index"] not in ok), "writeback"),
            )
            for m in lost
        ]
        try:
            summary = finalize_run(build_settings(), finished + failed)
        except RunFailed as exc:  # recorded (failed, or empty); a retry would record the same
            raise AirflowFailException(str(exc)) from exc
        if lost:
            raise AirflowFailException(
                f"{len(lost)} of {len(planned)} chunks failed after retries "
                f"(indexes {sorted(m['index'] for m in lost)}); "
                "their patients are recorded as failed"
            )
        return summary

    planned = plan()
    exported = BulkExportOperator(
        task_id="bulk_export",
        manifests=planned,
        extraction_mode="{{ params.extraction_mode }}",
        retries=0,
    )
    extracted = extract.expand(manifest=exported.output)
    scored = score.expand(manifest=extracted)
    written = write_back.expand(manifest=scored)
    # TaskFlow resolves these XComArgs to lists at run time.
    finalize(planned, extracted, scored, written)  # type: ignore[arg-type]


def _indexes(manifests: Sequence[dict[str, Any]]) -> set[int]:
    return {int(m["index"]) for m in manifests}


def _stash(settings: Any, manifest: dict[str, Any], stage: str) -> dict[str, Any]:
    """XCom carries a reference to the manifest in staging, never its patient ids."""
    from dipro_fhir.core import staging

    return staging.stash_manifest(settings.run.staging_dir, manifest, stage)


def _unstash(reference: dict[str, Any]) -> dict[str, Any]:
    from dipro_fhir.core import staging

    return staging.unstash_manifest(reference)


dipro_nightly()
