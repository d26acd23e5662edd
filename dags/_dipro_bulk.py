"""The Bulk Data export step of ``dipro_nightly``: a deferrable operator and its trigger.

``extraction_mode`` ``bulk``: the operator kicks off the ``$export`` jobs
(:func:`dipro_fhir.run.bulk.start_export`) and defers to :class:`BulkExportTrigger`, which
polls them in the triggerer's event loop (honouring ``Retry-After``) while no worker slot is
held; when they complete, the operator resumes, downloads the files into the run's staging
folder and hands the chunk manifests on with that folder named. ``rest``: it hands the
manifests on unchanged. A failed or timed-out export is cancelled (``DELETE``) and fails the
task; ``finalize`` then records the chunks' patients as failed.

This lives next to the DAG files because ``dipro_fhir`` never imports Airflow. The triggerer
imports the trigger by its class path ``_dipro_bulk.BulkExportTrigger``: the DAGs folder must
be on its ``PYTHONPATH`` (the sandbox and the compose file put it there).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from _dipro_common import build_settings
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

TRIGGER_CLASSPATH = "_dipro_bulk.BulkExportTrigger"


class BulkExportTrigger(BaseTrigger):
    """Polls a run's ``$export`` jobs until all complete or one fails.

    Args:
        state: :func:`dipro_fhir.run.bulk.start_export`'s state (JSON).
        timeout_s: Give up after this long (the operator then cancels the jobs).
    """

    def __init__(self, state: dict[str, Any], timeout_s: float) -> None:
        super().__init__()
        self.state = state
        self.timeout_s = timeout_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return TRIGGER_CLASSPATH, {"state": self.state, "timeout_s": self.timeout_s}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        state = self.state
        deadline = time.monotonic() + self.timeout_s
        polls = 0
        while True:
            polls += 1
            try:
                outcome = await asyncio.to_thread(_poll_once, state)
            except Exception as exc:  # the job failed: report it, the operator cancels
                yield TriggerEvent(
                    {"status": "failed", "state": state, "error": type(exc).__name__,
                     "message": str(exc)[:500], "polls": polls}
                )  # fmt: skip
                return
            state = outcome["state"]
            if outcome["done"]:
                yield TriggerEvent({"status": "complete", "state": state, "polls": polls})
                return
            if time.monotonic() > deadline:
                yield TriggerEvent(
                    {"status": "timeout", "state": state, "error": "timeout", "polls": polls}
                )
                return
            await asyncio.sleep(max(float(outcome["retry_after_s"]), 0.5))


def _poll_once(state: dict[str, Any]) -> dict[str, Any]:
    from dipro_fhir.run import bulk as bulk_run

    return bulk_run.poll_export(build_settings(), state)


class BulkExportOperator(BaseOperator):
    """Export the planned cohort with Bulk Data (``bulk``) or pass the plan on (``rest``).

    Args:
        manifests: References to the plan's chunk manifests in staging (templated: the
            ``plan`` task's XCom); what this task returns is references too.
        extraction_mode: ``rest``, ``bulk``, or empty for ``run.extraction_mode``.
    """

    template_fields: Sequence[str] = ("manifests", "extraction_mode")

    def __init__(self, *, manifests: Any, extraction_mode: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.manifests = manifests
        self.extraction_mode = extraction_mode

    def execute(self, context: Any) -> list[dict[str, Any]]:
        manifests = list(self.manifests or [])
        settings = build_settings()
        mode = self.extraction_mode or settings.run.extraction_mode
        if mode != "bulk" or not manifests:
            return manifests
        from dipro_fhir.core import staging
        from dipro_fhir.run import bulk as bulk_run

        state = bulk_run.start_export(settings, [staging.unstash_manifest(m) for m in manifests])
        timeout_s = settings.fhir.bulk_timeout_s
        self.defer(
            trigger=BulkExportTrigger(state=state, timeout_s=timeout_s),
            method_name="execute_complete",
            timeout=timedelta(seconds=timeout_s + 600),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> list[dict[str, Any]]:
        from dipro_fhir.core import staging
        from dipro_fhir.run import bulk as bulk_run

        settings = build_settings()
        if event.get("status") != "complete":
            bulk_run.cancel_export(settings, event["state"])
            raise AirflowFailException(
                f"Bulk Data export {event.get('status')}: {event.get('error')} "
                f"{event.get('message', '')}".strip()
            )
        self.log.info("Bulk Data export complete after %s polls", event.get("polls"))
        planned = [staging.unstash_manifest(m) for m in self.manifests]
        done = bulk_run.finish_export(settings, event["state"], planned)
        # XCom carries references, never patient ids (as the other tasks do).
        return [staging.stash_manifest(settings.run.staging_dir, m, "bulk") for m in done]
