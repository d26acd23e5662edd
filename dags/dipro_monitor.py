"""The monitor DAG: gather outcomes -> compute the night's figures and drift -> check.

Each task calls the monitoring room (:mod:`dipro_fhir.monitoring`), imported inside the task,
so parsing this file loads neither torch nor numpy-heavy code. ``check`` fails with one line
naming each breach (metric, window, value, threshold): Airflow's own alerting (e-mail,
``on_failure_callback``) carries it, and the night's results, written by ``compute``, stay.
See ``doc_md`` below (shown in the Airflow UI).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from _dipro_common import DagOptions, build_settings
from _dipro_failure import FAILURE_CALLBACKS
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

OPTIONS = DagOptions.from_environ()
ISO_DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"

DOC_MD = f"""
# dipro_monitor

Knows when the model stops working (docs/monitoring.md). Runs after the night's scoring
(`DIPRO_MONITOR_SCHEDULE`, now `{OPTIONS.monitor_schedule}` in {OPTIONS.timezone}).

**Steps.** `gather_outcomes` reads from FHIR the outcomes of scored stays that have ended
(death, length of stay, progression; by the training label rules) and stores them beside
their scores; open stays are counted as pending. `compute` measures every model version
scored in the last 30 days over 1, 7 and 30 days (AUROC with intervals, Brier, ECE,
observed vs predicted by decile, alert rate, PPV and sensitivity at the site's thresholds,
lead time, by subgroup) and compares tonight's inputs with the reference (coverage,
distribution per variable, unmapped codes, unusable films, scores); the night is written.
`check` fails when a threshold (`DIPRO_MONITOR__MAX_ECE`, `__MIN_AUROC`,
`__MAX_SUBGROUP_GAP`, `__COVERAGE_CHANGE`, `__MAX_PSI`, ...) is breached, with one line
naming the metric, the window, the value and the threshold.

**Parameters.** `as_of` (ISO 8601 or null): the night to monitor; default the logical date.
"""


def _as_of() -> datetime:
    from dipro_fhir.core.manifest import as_of_for_logical_date

    context = get_current_context()
    given = context["params"].get("as_of")
    if given:
        moment = datetime.fromisoformat(given)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    logical = context.get("logical_date") or context["dag_run"].run_after
    return as_of_for_logical_date(logical, OPTIONS.timezone)


@dag(
    dag_id="dipro_monitor",
    schedule=None
    if OPTIONS.monitor_schedule is None
    else CronTriggerTimetable(OPTIONS.monitor_schedule, timezone=OPTIONS.timezone),
    start_date=datetime(1970, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    description="Gather outcomes of scored stays, compute performance and drift, check the "
    "site's thresholds",
    doc_md=DOC_MD,
    tags=["dipro", "monitoring"],
    default_args=FAILURE_CALLBACKS,
    params={
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date-time",
            pattern=ISO_DATE_TIME,
            description="The night to monitor (ISO 8601); default: the logical date.",
        ),
    },
)
def dipro_monitor() -> None:
    """Three tasks, one after the other."""

    @task(retries=OPTIONS.retries, retry_delay=OPTIONS.retry_delay)
    def gather_outcomes() -> dict[str, int]:
        from dipro_fhir.monitoring.outcomes import gather_outcomes as gather

        return gather(build_settings(), _as_of()).to_json()

    @task(retries=OPTIONS.retries, retry_delay=OPTIONS.retry_delay)
    def compute(gathered: dict[str, int]) -> list[dict[str, Any]]:
        from dipro_fhir.monitoring.night import compute_night

        results = compute_night(build_settings(), _as_of())
        return [
            {
                "model_version": r.night.model_version,
                "status": r.night.status,
                "alerts": len(r.alerts),
                "outcomes": gathered,
            }
            for r in results
        ]

    @task(retries=0)
    def check(computed: list[dict[str, Any]]) -> int:
        from dipro_fhir.monitoring.alerts import MonitorBreach, check_night

        try:
            check_night(build_settings(), _as_of())
        except MonitorBreach as exc:  # a retry would find the same breach
            raise AirflowFailException(str(exc)) from None
        return len(computed)

    check(compute(gather_outcomes()))


dipro_monitor()
