"""What every chunk stage (extract, score, write back) does around its work.

A stage tells the store its run is alive (:func:`heartbeat`) and hands the next stage its
manifest with its failures, counts, timings and staging paths merged in (:func:`next_manifest`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from dipro_fhir.core.manifest import ChunkManifest
from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import RunId
from dipro_fhir.run import connections


def heartbeat(settings: Settings, chunk: ChunkManifest) -> None:
    """Tell the store this run is alive (stale-run detection), unless nothing is recorded."""
    if not chunk.dry_run:
        connections.result_store(settings).heartbeat(RunId(chunk.run_id))


def next_manifest(
    chunk: ChunkManifest,
    stage: str,
    started: float,
    failures: Sequence[PatientFailure],
    *,
    counts: Mapping[str, int],
    timings: Mapping[str, float] | None = None,
    **paths: str,
) -> dict[str, Any]:
    """The manifest a stage hands on: ``chunk`` with this stage's failures (added, without
    duplicates), counts, timings (its own since ``started``) and staging ``paths`` merged in.
    """
    new = tuple((f.patient_id, f.stage, f.reason, f.detail, f.retriable) for f in failures)
    merged_timings = {**chunk.timings_s, stage: time.perf_counter() - started, **(timings or {})}
    return replace(
        chunk,
        failures=tuple(dict.fromkeys(chunk.failures + new)),
        counts={**chunk.counts, **counts},
        timings_s=merged_timings,
        **paths,  # type: ignore[arg-type]
    ).to_xcom()
