"""A scoring run, stage by stage: plain functions over small, JSON-able manifests.

The Airflow DAGs only decorate and wire the stages; the CLI calls them in a loop
(:func:`run_locally`). Each stage reads what the previous one left in the staging area and
returns a manifest (a dict small enough for XCom). Stages of one chunk are idempotent: a
retried task overwrites its staging file, and write-back skips what is already on the server
and upserts the database. One module per stage:

    plan_run -> [chunk manifests] -> extract_chunk -> score_chunk -> write_back_chunk
             -> finalize_run (summary, data quality, watermark, clean-up; fails past the
                              failure limit)

    :mod:`~dipro_fhir.run.plan` -> :mod:`~dipro_fhir.run.extract_stage`
    -> :mod:`~dipro_fhir.run.score_stage` -> :mod:`~dipro_fhir.run.writeback_stage`
    -> :mod:`~dipro_fhir.run.finalize` (and :func:`~dipro_fhir.run.finalize.fail_chunk`)

This module re-exports them all, so ``pipeline.<name>`` reaches every step of a run.

Which patients an ``active`` run plans is ``settings.cohort`` (:func:`active_cohort`).

Bulkheads: every patient is extracted, scored and written inside its own boundary; whatever
goes wrong for one patient is recorded as its :class:`PatientFailure` (reason class
``retriable``, ``data`` or ``internal``, no patient data in the message) and the chunk goes
on. A chunk fails whole only when its dependencies are down (``run.outage_after`` patients
in a row found the source unavailable, credentials refused, the database unreachable); the
scheduler (or :func:`run_locally`) then hands it to :func:`fail_chunk` and :func:`finalize_run`
records its patients. Ids that are not FHIR ids (from the request, a Group, a search) never
go further than the plan: they are counted as one ``invalid-id`` failure of no patient.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dipro_fhir.core.errors import AuthError, ConfigError, ModelContractError
from dipro_fhir.core.manifest import (
    ChunkManifest,
    RunRequest,
    as_of_for_logical_date,
    run_id_for,
    summarise,
)
from dipro_fhir.core.settings import Settings
from dipro_fhir.run.extract_stage import extract_chunk
from dipro_fhir.run.finalize import RunFailed, fail_chunk, finalize_run
from dipro_fhir.run.plan import active_cohort, plan_run
from dipro_fhir.run.score_stage import score_chunk
from dipro_fhir.run.writeback_stage import write_back_chunk

logger = logging.getLogger(__name__)

__all__ = [
    "ChunkManifest",
    "RunFailed",
    "RunRequest",
    "active_cohort",
    "as_of_for_logical_date",
    "extract_chunk",
    "fail_chunk",
    "finalize_run",
    "plan_run",
    "run_id_for",
    "run_locally",
    "score_chunk",
    "summarise",
    "write_back_chunk",
]


def run_locally(
    settings: Settings,
    request: RunRequest,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run every step in this process, chunk after chunk (the CLI's ``score``; no scheduler).

    Args:
        settings: The configuration.
        request: What to score.
        progress: Called with ``(stage, chunks done, chunks total)`` after each step.
    """
    manifests = plan_run(settings, request)
    done: list[dict[str, Any]] = []
    fatal: BaseException | None = None
    for i, manifest in enumerate(manifests, start=1):
        if fatal is not None:  # credentials refused or the model unusable: no chunk can pass
            done.append(fail_chunk(manifest, "extract", f"not run ({type(fatal).__name__})"))
            continue
        for stage, step in (
            ("extract", extract_chunk),
            ("score", score_chunk),
            ("writeback", write_back_chunk),
        ):
            try:
                manifest = step(settings, manifest)
            except Exception as exc:  # the chunk boundary, as a task's
                logger.error("chunk %d failed in %s: %s", i - 1, stage, type(exc).__name__)
                manifest = fail_chunk(manifest, stage, f"{stage} failed ({type(exc).__name__})")
                if isinstance(exc, AuthError | ModelContractError | ConfigError):
                    fatal = exc
                break
            finally:
                if progress is not None:
                    progress(stage, i, len(manifests))
        done.append(manifest)
    summary = finalize_run(settings, done)
    if fatal is not None:
        raise fatal
    return summary
