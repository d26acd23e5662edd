"""The task bodies of a scoring run: plain functions over small, JSON-able manifests.

The Airflow DAGs only decorate and wire these; the CLI calls them in a loop. Each step reads
what the previous one left in the staging area and returns a manifest (a dict small enough for
XCom). Steps of one chunk are idempotent: a retried task overwrites its staging file, and
write-back skips what is already on the server and upserts the database.

    plan_run -> [chunk manifests] -> extract_chunk -> score_chunk -> write_back_chunk
             -> finalize_run (summary, data quality, watermark, clean-up; fails past the
                              failure limit)

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

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dipro_fhir import audit, connections, staging
from dipro_fhir.errors import (
    AuthError,
    ConfigError,
    DiproFhirError,
    ModelContractError,
    SourceUnavailable,
)
from dipro_fhir.manifest import (
    ChunkManifest,
    RunRequest,
    as_of_for_logical_date,
    run_id_for,
    score_from_json,
    score_to_json,
    summarise,
)
from dipro_fhir.plan import PIPELINE, active_cohort, plan_run
from dipro_fhir.scoring.score import PatientFailure, Score
from dipro_fhir.settings import Settings
from dipro_fhir.timeline import NO_PATIENT, EncounterId, PatientId, PatientTimeline, RunId

if TYPE_CHECKING:
    from dipro_fhir.fhir.source import FhirSource
    from dipro_fhir.store.results import ChunkCounts, ResultStore
    from dipro_fhir.timeline import MappingIssue
    from dipro_fhir.writeback.write import WriteReport

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


class RunFailed(DiproFhirError):
    """The run's share of failed patients exceeded the configured limit."""


def extract_chunk(settings: Settings, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Extract and map every patient of a chunk into one staging file of timelines.

    With the feature cache on, instances cached for the checkpoint's backbone are not
    retrieved (:class:`~dipro_fhir.scoring.features.CachedImages`).
    """
    from dipro_fhir.scoring.card import read_model_card

    chunk = ChunkManifest.from_xcom(manifest)
    started = time.perf_counter()
    _heartbeat(settings, chunk)
    card = read_model_card(settings.model.checkpoint)
    with audit.recording(settings, "extract", (card.name, card.version)) as recorder:
        return _extract(settings, chunk, card.config, audit.observers(recorder), started)


def _extract(
    settings: Settings,
    chunk: ChunkManifest,
    config: Any,
    observers: Sequence[Any],
    started: float,
) -> dict[str, Any]:
    from dipro.checkpoint import read_backbone_digest
    from dipro_fhir.extract import QualityCounter, StageTimer, extract_options, extract_patient
    from dipro_fhir.run_quality import chunk_orphans
    from dipro_fhir.scoring.features import CachedImages

    cache = connections.feature_cache(settings)
    lookup = None
    if cache is not None:
        lookup = CachedImages(cache, read_backbone_digest(settings.model.checkpoint))
    options = extract_options(
        settings, crop_size=config.crop_size, max_cxrs=config.max_cxrs, features=lookup
    )
    fhir = chunk_source(settings, chunk, observers)
    images = connections.image_source(settings.dicomweb)
    timelines: list[PatientTimeline] = []
    failures = list(chunk.failure_records())
    timer, quality = StageTimer(), QualityCounter()
    unavailable_in_a_row = 0
    for patient_id, encounter_id in chunk.patients:
        result = extract_patient(
            fhir,
            images,
            PatientId(patient_id),
            None if encounter_id is None else EncounterId(encounter_id),
            chunk.as_of_time,
            options,
            timer,
            quality,
        )
        if isinstance(result, PatientFailure):
            failures.append(result)
            unavailable_in_a_row = unavailable_in_a_row + 1 if result.retriable else 0
            if unavailable_in_a_row >= settings.run.outage_after and not timelines:
                raise SourceUnavailable(
                    f"chunk {chunk.index}: the first {unavailable_in_a_row} patients found "
                    "the sources unavailable; the chunk fails whole (dependencies down)"
                )
        else:
            unavailable_in_a_row = 0
            timelines.append(result)
    folder = staging.run_folder(settings.run.staging_dir, chunk.run_id, chunk.attempt)
    path = staging.save_timelines(f"{folder}/chunk-{chunk.index:05d}.timelines.npz", timelines)
    chunk = replace(chunk, quality=quality.summary.to_json(), orphan_issues=chunk_orphans(fhir))
    return _next(
        chunk,
        "extract",
        started,
        failures,
        timelines_path=str(path),
        counts={
            "extracted": len(timelines),
            "cxrs": sum(len(t.images) for t in timelines),
            "cxrs_from_cache": 0 if lookup is None else lookup.hits,
            "feature_cache_corrupt": 0 if lookup is None else lookup.corrupt,
            **_dicomweb_bytes(images),
        },
        timings={
            **{f"extract.{k}": v for k, v in timer.seconds.items()},
            **_dicomweb_seconds(images),
        },
    )


def _dicomweb_bytes(images: object) -> dict[str, int]:
    """Bytes a DICOMweb source received: pixels (WADO instance) and everything else."""
    received: dict[str, int] | None = getattr(images, "bytes_received", None)
    if received is None:
        return {}
    pixels = received.get("WADO instance", 0)
    return {"wado_instance_bytes": pixels, "dicomweb_other_bytes": sum(received.values()) - pixels}


def chunk_source(
    settings: Settings, chunk: ChunkManifest, observers: Sequence[Any] = ()
) -> FhirSource:
    """A chunk's FHIR source: the run's Bulk export when it has one, else the configured
    source, prefetched for the chunk when it batches its searches."""
    from dipro_fhir.fhir.batched import prefetch_chunk
    from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource

    if chunk.ndjson_dir:
        return NdjsonFhirSource(chunk.ndjson_dir, connections.input_limits(settings))
    source = connections.fhir_source(settings, observers=observers)
    patients = [p for p, _ in chunk.patients]
    prefetch_chunk(source, patients, chunk.as_of_time, settings.run.window_hours)
    return source


def _dicomweb_seconds(images: object) -> dict[str, float]:
    """Seconds a DICOMweb source spent: pixels (WADO instance) and the QIDO/metadata check."""
    spent: dict[str, float] | None = getattr(images, "seconds_by_action", None)
    if spent is None:
        return {}
    pixels = spent.get("WADO instance", 0.0)
    return {
        "extract.images.wado_instance": pixels,
        "extract.images.qido_metadata": sum(spent.values()) - pixels,
    }


def score_chunk(settings: Settings, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Score a chunk's timelines; the scores go to a staging JSON file."""
    from dipro_fhir.scoring.features import FeatureStats
    from dipro_fhir.scoring.gate import check_validation
    from dipro_fhir.scoring.scorer import load_model, score_timelines

    chunk = ChunkManifest.from_xcom(manifest)
    started = time.perf_counter()
    _heartbeat(settings, chunk)
    model = load_model(settings.model.checkpoint, settings.model.device)
    check_validation(model.card, settings.model, settings.model.checkpoint)
    assert chunk.timelines_path is not None, "score_chunk needs an extracted chunk"
    timelines = staging.load_timelines(chunk.timelines_path)
    run_id = RunId(chunk.run_id)
    failures: list[PatientFailure] = []
    cache = connections.feature_cache(settings)
    stats = FeatureStats()
    try:
        scores = score_timelines(
            model,
            timelines,
            run_id=run_id,
            batch_size=settings.model.batch_size,
            cache=cache,
            stats=stats,
        )
    except Exception:  # a batch failed: find its patient, score the rest
        scores = []
        for timeline in timelines:
            try:
                scores += score_timelines(
                    model, [timeline], run_id=run_id, batch_size=1, cache=cache, stats=stats
                )
            except Exception as exc:  # the patient boundary
                failures.append(_score_failure(timeline.patient_id, exc))
        if timelines and len(failures) == len(timelines):
            raise  # every patient fails alike: the model, not the data
    failed = {f.patient_id for f in failures}
    folder = staging.run_folder(settings.run.staging_dir, chunk.run_id, chunk.attempt)
    path = f"{folder}/chunk-{chunk.index:05d}.scores.json"
    payload = {
        "model": asdict(model.info),
        "scores": [score_to_json(s) for s in scores],
        "stay_starts": {
            t.patient_id: t.stay_start.isoformat()
            for t in timelines
            if t.stay_start is not None and t.patient_id not in failed
        },
        "issues": {
            t.patient_id: [[i.code, i.resource, i.detail] for i in t.issues] for t in timelines
        },
    }
    staging.write_bytes(path, json.dumps(payload).encode())
    return _next(
        chunk,
        "score",
        started,
        failures,
        scores_path=path,
        counts={
            "scored": len({s.patient_id for s in scores}),
            "scores": len(scores),
            "backbone_crops": stats.crops_computed,
            "cxrs_features_cached": stats.cxrs_cached,
        },
        timings={"model_load": model.load_seconds, "score.backbone": stats.backbone_s},
    )


def _heartbeat(settings: Settings, chunk: ChunkManifest) -> None:
    """Tell the store this run is alive (stale-run detection), unless nothing is recorded."""
    if not chunk.dry_run:
        connections.result_store(settings).heartbeat(RunId(chunk.run_id))


def _score_failure(patient_id: PatientId, exc: Exception) -> PatientFailure:
    from dipro_fhir.log import patient_tag

    reason = "model-contract" if isinstance(exc, ModelContractError) else "internal-error"
    logger.warning("patient %s failed in score: %s", patient_tag(patient_id), type(exc).__name__)
    return PatientFailure(patient_id, "score", reason, type(exc).__name__, False)


def write_back_chunk(settings: Settings, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Publish a chunk: RiskAssessments to the sink first, then rows to the results store."""
    from dipro_fhir.timeline import MappingIssue

    chunk = ChunkManifest.from_xcom(manifest)
    started = time.perf_counter()
    assert chunk.scores_path is not None, "write_back_chunk needs a scored chunk"
    payload = json.loads(staging.read_bytes(chunk.scores_path))
    scores = [score_from_json(s) for s in payload["scores"]]
    if chunk.dry_run:
        return _next(chunk, "writeback", started, [], counts={"written": 0})
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
        store.night_lock(f"{chunk.as_of}|{model['version']}"),
        audit.recording(settings, "writeback", (model["name"], model["version"])) as recorder,
    ):
        report, _ = _publish(
            settings, store, chunk, payload, scores, issues, audit.observers(recorder)
        )
    return _next(
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
) -> tuple[WriteReport, ChunkCounts]:
    from dipro_fhir.scoring.score import ModelInfo
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
            settings.writeback, source_base=settings.fhir.base_url
        ),
        stay_starts={
            PatientId(p): datetime.fromisoformat(t) for p, t in payload["stay_starts"].items()
        },
    )


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
    recorded now. The watermark moves only when no failure is retriable, so a ``new_data``
    run the next night still picks those patients up.

    Raises:
        RunFailed: More than ``run.max_failed_share`` of the patients failed.
    """
    chunks = [ChunkManifest.from_xcom(m) for m in manifests]
    summary = summarise(chunks)
    share = summary["failed_patients"] / max(summary["patients"], 1)
    status = "success" if summary["failed_patients"] == 0 else "partial"
    if share > settings.run.max_failed_share:
        status = "failed"
    summary["status"] = status
    if chunks:
        summary["data_quality"] = _data_quality(settings, chunks)
    if chunks and not chunks[0].dry_run:
        _record_run_end(settings, chunks, summary)
    if chunks and status != "failed":
        staging.remove_run(settings.run.staging_dir, chunks[0].run_id, chunks[0].attempt)
    if status == "failed":
        raise RunFailed(
            f"{summary['failed_patients']} of {summary['patients']} patients failed "
            f"({share:.0%} > limit {settings.run.max_failed_share:.0%}); reasons: "
            f"{summary['failure_reasons']}"
        )
    return summary


def _data_quality(settings: Settings, chunks: Sequence[ChunkManifest]) -> dict[str, Any]:
    from dipro_fhir.run_quality import finish_quality
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
    if status != "failed" and not retriable:
        card = read_model_card(settings.model.checkpoint)
        store.set_watermark(PIPELINE, card.name, chunks[0].as_of_time, run_id)


def _next(
    chunk: ChunkManifest,
    stage: str,
    started: float,
    failures: Sequence[PatientFailure],
    *,
    counts: Mapping[str, int],
    timings: Mapping[str, float] | None = None,
    **paths: str,
) -> dict[str, Any]:
    new = tuple((f.patient_id, f.stage, f.reason, f.detail, f.retriable) for f in failures)
    merged_timings = {**chunk.timings_s, stage: time.perf_counter() - started, **(timings or {})}
    return replace(
        chunk,
        failures=tuple(dict.fromkeys(chunk.failures + new)),
        counts={**chunk.counts, **counts},
        timings_s=merged_timings,
        **paths,  # type: ignore[arg-type]
    ).to_xcom()


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
