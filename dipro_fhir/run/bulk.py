"""The Bulk Data step of a run (``extraction_mode`` ``bulk``): task bodies between plan and
the chunk tasks, over small JSON-able states (XCom, trigger kwargs).

    plan_run -> start_export (kick-off) -> poll_export ... (a deferrable trigger's loop)
             -> finish_export (download into the run's staging folder) -> extract_chunk

The cohort is exported as a Group: the one configured (``fhir.bulk_group_id``, or the
cohort's own Group), else one the plan writes (``Group/dipro-cohort-<run hash>``, members in
cohort order); a system-level export (``fhir.bulk_level=system``) is for a sandbox server
holding one cohort. Observations come with ``_since`` = watermark (or as-of) minus the
window, and, where the server takes it, a ``_typeFilter`` for the mapped codes
(:func:`dipro_fhir.fhir.bulk_requests.export_requests`). A job the server fails while a
``_typeFilter`` was in it is asked again once without it (HAPI takes an unusable filter at
kick-off and fails the job when it runs). Every chunk manifest then names the export folder,
and the chunk reads it with the NDJSON source.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from dipro_fhir.core import staging
from dipro_fhir.core.errors import ConfigError
from dipro_fhir.core.manifest import ChunkManifest
from dipro_fhir.core.settings import Settings
from dipro_fhir.fhir.bulk import (
    BulkExportClient,
    BulkExportError,
    ExportJob,
    ExportManifest,
    PollPolicy,
    track_unreachable,
)
from dipro_fhir.fhir.bulk_files import download_export
from dipro_fhir.fhir.bulk_requests import ExportRequest, code_filter, code_tokens, export_requests
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.run import connections

logger = logging.getLogger(__name__)

PIPELINE = "dipro_nightly"


def start_export(settings: Settings, manifests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Kick off the run's export jobs; returns the state the poller and downloader need.

    Raises:
        ConfigError: The staging area is not a local folder, or no FHIR server is set.
        BulkExportError: The server refused an export.
    """
    chunks = [ChunkManifest.from_xcom(m) for m in manifests]
    if not chunks:
        raise ConfigError("nothing to export: the plan is empty")
    first = chunks[0]
    folder = bulk_folder(settings, first.run_id)
    with connections.fhir_client(settings.fhir) as client:
        group_id = _export_group(settings, client, chunks)
        requests = export_requests(
            group_id=group_id,
            as_of=first.as_of_time,
            window_hours=settings.run.window_hours,
            watermark=None if first.dry_run else _watermark(settings),
            observation_filter=_observation_filter(settings),
        )
        bulk = BulkExportClient(client, _policy(settings))
        jobs = []
        try:
            for request in requests:
                jobs.append(bulk.kick_off(request))
        except BaseException:
            bulk.cancel_all(jobs)
            raise
    return {
        "folder": str(folder),
        "jobs": [job.to_json() for job in jobs],
        "requests": [_request_json(r) for r in requests],
    }


def poll_export(settings: Settings, state: Mapping[str, Any]) -> dict[str, Any]:
    """Poll every job once. Returns ``{"done": bool, "retry_after_s": float, "state": ...}``;
    a job that failed with a ``_typeFilter`` is kicked off again without it (the state
    then names the new job). ``state["unreachable_since"]`` records since when the status
    endpoint has been unreachable.

    Raises:
        BulkExportError: A job failed (all jobs are cancelled), or the status endpoint has
            been unreachable for longer than ``fhir.bulk_unreachable_s`` (the caller cancels).
    """
    state = dict(state)
    jobs = [ExportJob.from_json(j) for j in state["jobs"]]
    with connections.fhir_client(settings.fhir) as client:
        bulk = BulkExportClient(client, _policy(settings))
        waits: list[float] = []
        unreachable = False
        for i, job in enumerate(jobs):
            try:
                result = bulk.poll(job)
            except BulkExportError:
                if not job.type_filter_used:
                    bulk.cancel_all(jobs)
                    raise
                bulk.cancel(job)
                logger.warning("bulk export: a job with _typeFilter failed; asking without it")
                request = _request_from(state["requests"][i])
                jobs[i] = bulk.kick_off(ExportRequest(request.types, request.group_id,
                                                      request.since))  # fmt: skip
                waits.append(settings.fhir.bulk_poll_max_s / 10)
                continue
            unreachable |= result.unreachable
            if result.manifest is None:
                waits.append(result.retry_after_s)
        # Epoch seconds, not monotonic: the state crosses processes.
        since = state.get("unreachable_since")
        state["unreachable_since"] = track_unreachable(
            None if since is None else float(since), unreachable, time.time(), bulk.policy
        )
    state["jobs"] = [job.to_json() for job in jobs]
    delay = min(max(waits, default=0.0), settings.fhir.bulk_poll_max_s)
    return {"done": not waits, "retry_after_s": delay, "state": state}


def finish_export(
    settings: Settings, state: Mapping[str, Any], manifests: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Download the completed jobs' files, release the jobs, and point every chunk at them.

    Raises:
        BulkExportError: A job is not complete, or a file could not be downloaded whole.
    """
    jobs = [ExportJob.from_json(j) for j in state["jobs"]]
    with connections.fhir_client(settings.fhir) as client:
        bulk = BulkExportClient(client, _policy(settings))
        try:
            found: list[ExportManifest] = []
            for job in jobs:
                result = bulk.poll(job)
                if result.manifest is None:
                    raise BulkExportError("finish_export: a job is not complete")
                found.append(result.manifest)
            report = download_export(client, found, state["folder"])
        finally:
            bulk.cancel_all(jobs)  # done or failed: the server may drop the files
    counts = {f"bulk.{t}": n for t, n in report.lines_by_type().items()}
    counts["bulk.error_issues"] = sum(report.error_issues.values())
    return [
        replace(c, ndjson_dir=state["folder"], counts={**c.counts, **counts}).to_xcom()
        for c in (ChunkManifest.from_xcom(m) for m in manifests)
    ]


def cancel_export(settings: Settings, state: Mapping[str, Any]) -> None:
    """``DELETE`` every job of ``state`` (an abandoned run)."""
    with connections.fhir_client(settings.fhir) as client:
        BulkExportClient(client).cancel_all([ExportJob.from_json(j) for j in state["jobs"]])


def bulk_folder(settings: Settings, run_id: str) -> Path:
    """The run's export folder under the staging area (it must be a local folder: the NDJSON
    source seeks in the files).

    Raises:
        ConfigError: ``run.staging_dir`` is a URL.
    """
    if "://" in settings.run.staging_dir:
        raise ConfigError("extraction_mode bulk needs a local (shared) run.staging_dir")
    return Path(staging.run_folder(settings.run.staging_dir, run_id)) / "bulk"


def cohort_group(run_id: str, patients: Sequence[str]) -> dict[str, Any]:
    """The Group a plan writes for a cohort (``actual``, members in order)."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:16]
    return {
        "resourceType": "Group",
        "id": f"dipro-cohort-{digest}",
        "type": "person",
        "actual": True,
        "name": "DiPro scoring cohort",
        "member": [{"entity": {"reference": f"Patient/{p}"}} for p in patients],
    }


def _export_group(
    settings: Settings, client: FhirClient, chunks: Sequence[ChunkManifest]
) -> str | None:
    if settings.fhir.bulk_level == "system":
        return None
    if settings.fhir.bulk_group_id:
        return settings.fhir.bulk_group_id
    if settings.cohort.rule == "group" and settings.cohort.group_id:
        return settings.cohort.group_id
    if chunks[0].dry_run:
        raise ConfigError(
            "a dry run writes nothing, so it cannot write the cohort's Group: set "
            "fhir.bulk_group_id or fhir.bulk_level=system for a bulk dry run"
        )
    patients = [p for chunk in chunks for p, _ in chunk.patients]
    group = cohort_group(chunks[0].run_id, list(dict.fromkeys(patients)))
    client.put(group)
    return str(group["id"])


def _watermark(settings: Settings) -> datetime | None:
    from dipro_fhir.scoring.card import read_model_card

    name = read_model_card(settings.model.checkpoint).name
    return connections.result_store(settings).watermark(PIPELINE, name)


def _observation_filter(settings: Settings) -> str | None:
    if not settings.fhir.bulk_type_filter:
        return None
    return code_filter(code_tokens(connections.code_maps(settings).variables.entries))


def _policy(settings: Settings) -> PollPolicy:
    fhir = settings.fhir
    return PollPolicy(
        max_s=fhir.bulk_poll_max_s,
        timeout_s=fhir.bulk_timeout_s,
        unreachable_s=fhir.bulk_unreachable_s,
    )


def _request_json(request: ExportRequest) -> dict[str, Any]:
    return {
        "types": list(request.types),
        "group_id": request.group_id,
        "since": None if request.since is None else request.since.isoformat(),
        "type_filters": list(request.type_filters),
    }


def _request_from(data: Mapping[str, Any]) -> ExportRequest:
    since = data.get("since")
    return ExportRequest(
        tuple(data["types"]),
        data.get("group_id"),
        None if since is None else datetime.fromisoformat(since),
        tuple(data.get("type_filters") or ()),
    )
