"""Stage 5 of a run: record the chunks that failed and finish the run.

:func:`fail_chunk` turns a chunk whose task failed for good into failures of all its
patients; :func:`finalize_run` summarises the run, records it (with its data quality), moves
the watermark and cleans the staging area, and raises :class:`RunFailed` past the failure
limit, or :class:`EmptyRun` when the run had no patient: a run that did nothing is recorded
as ``empty``, with its data-quality row, and never reported as success.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from dipro_fhir.core import staging
from dipro_fhir.core.errors import DiproFhirError
from dipro_fhir.core.manifest import ChunkManifest, summarise
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import RunId
from dipro_fhir.run import connections
from dipro_fhir.run.plan import PIPELINE


class RunFailed(DiproFhirError):
    """The run's share of failed patients exceeded the configured limit."""


class EmptyRun(RunFailed):
    """The run planned no patient: nothing was scored (recorded with status ``empty``)."""


def fail_chunk(
    manifest: Mapping[str, Any], stage: str, detail: str | None = None
) -> dict[str, Any]:
    """A chunk whose ``stage`` task failed for good: every patient fails there, retriable.

    The scheduler (or :func:`run_locally`) calls this for chunks that produced no output,
    so :func:`finalize_run` records their patients instead of losing them.
    """
    chunk = ChunkManifest.from_xcom(manifest)
    reason = (stage, "task-failed", detail or "the chunk's task failed after its retries", True)
    failures = tuple((p, *reason) for p, _encounter in chunk.patients)
    return replace(chunk, failures=failures, counts={**chunk.counts, "lost": 1}).to_xcom()


def finalize_run(settings: Settings, manifests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summarise the run, record it, move the watermark, clean the staging area.

    Patients of chunks that never reached write-back (their failures were never stored) are
    recorded now. The watermark moves only for a ``nightly`` run (never a manual or backfill
    run) and only when no failure is retriable, so a ``new_data`` run the next night still
    picks those patients up.

    Raises:
        RunFailed: More than ``run.max_failed_share`` of the patients failed.
        EmptyRun: The run had no patient.
    """
    chunks = [ChunkManifest.from_xcom(m) for m in manifests]
    summary = summarise(chunks)
    share = summary["failed_patients"] / max(summary["patients"], 1)
    status = "success" if summary["failed_patients"] == 0 else "partial"
    if share > settings.run.max_failed_share:
        status = "failed"
    if summary["patients"] == 0:
        status = "empty"
    summary["status"] = status
    if chunks:
        summary["data_quality"] = _data_quality(settings, chunks)
    if chunks and not chunks[0].dry_run:
        _record_run_end(settings, chunks, summary)
    if chunks and status != "failed":
        staging.remove_run(settings.run.staging_dir, chunks[0].run_id, chunks[0].attempt)
    if status == "empty":
        raise EmptyRun(
            f"run {summary['run_id']} scored nobody: its cohort as of {summary['as_of']} has no "
            "patient (recorded as status 'empty'; check the cohort rule and the source)"
        )
    if status == "failed":
        raise RunFailed(
            f"{summary['failed_patients']} of {summary['patients']} patients failed "
            f"({share:.0%} > limit {settings.run.max_failed_share:.0%}); reasons: "
            f"{summary['failure_reasons']}"
        )
    return summary


def _data_quality(settings: Settings, chunks: Sequence[ChunkManifest]) -> dict[str, Any]:
    from dipro_fhir.run.quality import finish_quality
    from dipro_fhir.scoring.card import read_model_card

    name = read_model_card(settings.model.checkpoint).name
    return finish_quality(settings, chunks, pipeline=PIPELINE, model_name=name)


def _record_run_end(
    settings: Settings, chunks: Sequence[ChunkManifest], summary: dict[str, Any]
) -> None:
    from dipro_fhir.scoring.card import read_model_card

    store = connections.result_store(settings)
    run_id = RunId(chunks[0].run_id)
    for chunk in chunks:
        if "written" not in chunk.counts and chunk.failures:
            store.record_chunk(run_id, [], chunk.failure_records())
    counts = {k: v for k, v in summary.items() if isinstance(v, int)}
    status = summary["status"]
    night = store.finish_run(run_id, status=status, counts=counts, timings_s=summary["timings_s"])
    summary["night_status"] = night
    # This attempt's failures stay open; earlier ones it did not repeat are superseded (a
    # complete night supersedes every failure of a later, failing attempt too).
    current = [] if night == "success" else [f for c in chunks for f in c.failure_records()]
    summary["superseded_failures"] = store.supersede_failures(run_id, current)
    retriable = any(f[4] for chunk in chunks for f in chunk.failures)
    if status in ("success", "partial") and not retriable and chunks[0].kind == "nightly":
        card = read_model_card(settings.model.checkpoint)
        store.set_watermark(PIPELINE, card.name, chunks[0].as_of_time, run_id)
