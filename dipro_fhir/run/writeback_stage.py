"""Stage 4 of a run: write a scored chunk back.

:func:`write_back_chunk` reads the scores :func:`~dipro_fhir.run.score_stage.score_chunk`
staged and publishes them (:func:`~dipro_fhir.writeback.write.publish_chunk`): the
RiskAssessments to the sink first, then the rows to the results store, under the night's lock.
A dry run writes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dipro_fhir.core import staging
from dipro_fhir.core.manifest import ChunkManifest, score_from_json
from dipro_fhir.core.scores import Score
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import NO_PATIENT, PatientId, RunId
from dipro_fhir.run import audit, connections
from dipro_fhir.run.stage_common import next_manifest

if TYPE_CHECKING:
    from dipro_fhir.core.timeline import MappingIssue
    from dipro_fhir.store.results import ChunkCounts, ResultStore
    from dipro_fhir.writeback.write import WriteReport


def write_back_chunk(settings: Settings, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Publish a chunk: RiskAssessments to the sink first, then rows to the results store."""
    from dipro_fhir.core.timeline import MappingIssue

    chunk = ChunkManifest.from_xcom(manifest)
    started = time.perf_counter()
    assert chunk.scores_path is not None, "write_back_chunk needs a scored chunk"
    payload = json.loads(staging.read_bytes(chunk.scores_path))
    scores = [score_from_json(s) for s in payload["scores"]]
    if chunk.dry_run:
        return next_manifest(chunk, "writeback", started, [], counts={"written": 0})
    issues = {
        PatientId(p): [MappingIssue(c, r, d) for c, r, d in items]
        for p, items in payload["issues"].items()
    }
    if chunk.orphan_issues:  # problems of no patient that can be told
        issues[NO_PATIENT] = [MappingIssue(c, r or None, d) for c, r, d in chunk.orphan_issues]
    store = connections.result_store(settings)
    store.heartbeat(RunId(chunk.run_id))
    # Two runs of one night (same as-of and model) write back one after the other.
    model = payload["model"]
    with (
        store.night_lock(f"{chunk.as_of}|{model['version']}") as lock,
        audit.recording(settings, "writeback", (model["name"], model["version"])) as recorder,
    ):
        report, _ = _publish(
            settings, store, chunk, payload, scores, issues, audit.observers(recorder), lock.check
        )
    return next_manifest(
        chunk,
        "writeback",
        started,
        list(report.failures),
        counts={"written": report.written, "unchanged": report.unchanged},
    )


def _publish(
    settings: Settings,
    store: ResultStore,
    chunk: ChunkManifest,
    payload: Mapping[str, Any],
    scores: Sequence[Score],
    issues: Mapping[PatientId, Sequence[MappingIssue]],
    observers: Sequence[Any] = (),
    before_part: Callable[[], None] | None = None,
) -> tuple[WriteReport, ChunkCounts]:
    from dipro_fhir.core.scores import ModelInfo
    from dipro_fhir.writeback.assessment import AssessmentOptions
    from dipro_fhir.writeback.write import publish_chunk

    return publish_chunk(
        connections.result_sink(settings, observers),
        store,
        RunId(chunk.run_id),
        scores,
        ModelInfo(**payload["model"]),
        failures=chunk.failure_records(),
        issues=issues,
        options=AssessmentOptions.from_settings(
            settings.writeback,
            source_base=settings.fhir.base_url,
            source_files=None if settings.fhir.base_url else settings.fhir.ndjson_dir,
        ),
        stay_starts={
            PatientId(p): datetime.fromisoformat(t) for p, t in payload["stay_starts"].items()
        },
        before_part=before_part,
    )
