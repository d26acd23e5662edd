"""Retraction DAG: a model version's RiskAssessments become ``entered-in-error``.

Manual only. One task calls :func:`dipro_fhir.run.retraction.run_retraction` (the same code as
``dipro-fhir retract``); it is idempotent, so a retried or re-triggered run finishes what an
interrupted one started.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from _dipro_common import build_settings
from _dipro_failure import FAILURE_CALLBACKS
from airflow.sdk import Param, dag, get_current_context, task

FHIR_ID = r"^[A-Za-z0-9\-\.]{1,64}$"
ISO_DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"

DOC_MD = """
# dipro_retract

Withdraws a model version's results. Every `RiskAssessment` of `model_version` (its
`performer` is the version's `Device`) with an as-of time in `[since, until)` (and of
`patient_ids`, when given) gets a new version with status `entered-in-error`, written in one
transaction with a `Provenance` (activity `NULLIFY`, the `reason`); the result rows in the
database are marked retracted. A later night never brings a retracted result back, and a
retraction of every patient without `until` makes the nightly DAG refuse that version.

Parameters: `model_version` (required), `reason` (required), `since` and `until` (ISO 8601
or null), `patient_ids` (list of FHIR ids, default every patient).
"""


@dag(
    dag_id="dipro_retract",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    description="Withdraw a model version's RiskAssessments (entered-in-error) and result rows",
    doc_md=DOC_MD,
    tags=["dipro", "fhir", "retraction"],
    default_args=FAILURE_CALLBACKS,
    params={
        "model_version": Param("", type="string", minLength=1, description="Version to retract."),
        "reason": Param("", type="string", minLength=1, description="Why (to the Provenance)."),
        "since": Param(None, type=["null", "string"], pattern=ISO_DATE_TIME),
        "until": Param(None, type=["null", "string"], pattern=ISO_DATE_TIME),
        "patient_ids": Param(
            [], type="array", items={"type": "string", "pattern": FHIR_ID}, uniqueItems=True
        ),
    },
)
def dipro_retract() -> None:
    """One task: the retraction."""

    @task
    def retract() -> dict[str, Any]:
        from dipro_fhir.run.retraction import run_retraction
        from dipro_fhir.store.retractions import RetractionRequest

        params = get_current_context()["params"]

        def when(text: str | None) -> datetime | None:
            if not text:
                return None
            value = datetime.fromisoformat(text)
            return value if value.tzinfo else value.replace(tzinfo=UTC)

        request = RetractionRequest(
            model_version=params["model_version"],
            reason=params["reason"],
            since=when(params["since"]),
            until=when(params["until"]),
            patients=tuple(params["patient_ids"]),
        )
        return run_retraction(build_settings(), request)

    retract()


dipro_retract()
