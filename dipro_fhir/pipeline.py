"""The task bodies of a scoring run: plain functions over small, JSON-able manifests.

The Airflow DAGs only decorate and wire these; the CLI calls them in a loop. Each step reads
what the previous one left in the staging area and returns a manifest (a dict small enough for
XCom). Steps of one chunk are idempotent: a retried task overwrites its staging file, and
write-back skips what is already on the server and upserts the database.

    plan_run -> [chunk manifests] -> extract_chunk -> score_chunk -> write_back_chunk
             -> finalize_run (summary, data quality, watermark, clean-up; fails past the
                              failure limit)

Which patients an ``active`` run plans is ``settings.cohort`` (:func:`active_cohort`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from dipro_fhir import connections, staging
from dipro_fhir.errors import ConfigError, DiproFhirError
from dipro_fhir.fhir.source import FhirSource
from dipro_fhir.manifest import (
    ChunkManifest,
    RunRequest,
    as_of_for_logical_date,
    run_id_for,
    score_from_json,
    score_to_json,
    summarise,
)
from dipro_fhir.scoring.score import PatientFailure
from dipro_fhir.settings import Settings
from dipro_fhir.timeline import NO_PATIENT, EncounterId, PatientId, RunId

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

PIPELINE = "dipro_nightly"


class RunFailed(DiproFhirError):
    """The run's share of failed patients exceeded the configured limit."""


def plan_run(settings: Settings, request: RunRequest) -> list[dict[str, Any]]:
    """Choose the cohort, record the run, and split it into chunk manifests.

    Raises:
        ConfigError: The request is inconsistent (naive time, unknown model version).
        ModelContractError: The checkpoint cannot be read.
    """
    if request.as_of.tzinfo is None:
        raise ConfigError("as_of must be timezone-aware")
    from dipro.checkpoint import read_card

    card = read_card(settings.model.checkpoint)
    if request.model_version and request.model_version != card.version:
        raise ConfigError(
            f"model version {request.model_version!r} requested, checkpoint has {card.version!r}"
        )
    run_id = run_id_for(request, card.version)
    patients = _cohort(settings, request, card.name)
    if not request.dry_run:
        from sqlalchemy.exc import OperationalError, ProgrammingError

        try:
            connections.result_store(settings).start_run(
                run_id,
                as_of=request.as_of,
                model_name=card.name,
                model_version=card.version,
                pipeline=PIPELINE,
                dag_run_id=request.dag_run_id,
            )
        except (OperationalError, ProgrammingError) as exc:
            raise ConfigError(
                "the results database cannot record the run (no schema?): "
                "run `dipro-fhir db upgrade` first"
            ) from exc
    size = settings.run.chunk_size
    chunks = [
        ChunkManifest(
            run_id=run_id,
            index=i // size,
            as_of=request.as_of.astimezone(UTC).isoformat(),
            patients=tuple(patients[i : i + size]),
            dry_run=request.dry_run,
        ).to_xcom()
        for i in range(0, len(patients), size)
    ]
    logger.info("run %s planned: %d patients in %d chunks", run_id, len(patients), len(chunks))
    return chunks


def _cohort(
    settings: Settings, request: RunRequest, model_name: str
) -> list[tuple[str, str | None]]:
    source = connections.fhir_source(settings)
    if request.patient_ids:
        return [(p, None) for p in dict.fromkeys(request.patient_ids)]
    if request.group_id:
        return [(p, None) for p in source.group_members(request.group_id)]
    if request.cohort == "new_data":
        since = connections.result_store(settings).watermark(PIPELINE, model_name)
        start = since or request.as_of - timedelta(hours=settings.run.window_hours)
        return [(p, None) for p in source.patients_with_data_since(start, request.as_of)]
    return active_cohort(settings, source, request.as_of)


def active_cohort(
    settings: Settings, source: FhirSource, as_of: datetime
) -> list[tuple[str, str | None]]:
    """The ``active`` cohort by ``settings.cohort``: a Group's or List's members, or one
    admitted encounter per patient (:mod:`dipro_fhir.fhir.cohort`).

    Raises:
        ConfigError: The cohort's Group or List is not configured.
    """
    cohort = settings.cohort
    if cohort.rule == "group":
        if not cohort.group_id:
            raise ConfigError("cohort.rule=group needs cohort.group_id")
        return [(p, None) for p in source.group_members(cohort.group_id)]
    if cohort.rule == "list":
        if not cohort.list_id:
            raise ConfigError("cohort.rule=list needs cohort.list_id")
        return list(dict.fromkeys(source.list_members(cohort.list_id)))
    rule = connections.cohort_rule(settings, connections.code_maps(settings))
    return [(p, e) for p, e in source.active_encounter_patients(as_of, rule)]


def extract_chunk(settings: Settings, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Extract and map every patient of a chunk into one staging file of timelines.

    With the feature cache on, instances cached for the checkpoint's backbone are not
    retrieved (:class:`~dipro_fhir.scoring.features.CachedImages`).
    """
    from dipro.checkpoint import read_backbone_digest, read_card
    from dipro_fhir.extract import QualityCounter, StageTimer, extract_options, extract_patient
    from dipro_fhir.run_quality import chunk_orphans
    from dipro_fhir.scoring.features import CachedImages

    chunk = ChunkManifest.from_xcom(manifest)
    started = time.perf_counter()
    config = read_card(settings.model.checkpoint).config
    cache = connections.feature_cache(settings)
    lookup = None
    if cache is not None:
        lookup = CachedImages(cache, read_backbone_digest(settings.model.checkpoint))
    options = extract_options(
        settings, crop_size=config.crop_size, max_cxrs=config.max_cxrs, features=lookup
    )
    fhir = connections.fhir_source(settings)
    images = connections.image_source(settings.dicomweb)
    timelines, failures = [], list(chunk.failure_records())
    timer, quality = StageTimer(), QualityCounter()
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
        else:
            timelines.append(result)
    folder = staging.run_folder(settings.run.staging_dir, chunk.run_id)
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
    from dipro_fhir.scoring.scorer import load_model, score_timelines

    chunk = ChunkManifest.from_xcom(manifest)
    started = time.perf_counter()
    model = load_model(settings.model.checkpoint, settings.model.device)
    assert chunk.timelines_path is not None, "score_chunk needs an extracted chunk"
    timelines = staging.load_timelines(chunk.timelines_path)
    stats = FeatureStats()
    scores = score_timelines(
        model,
        timelines,
        run_id=RunId(chunk.run_id),
        batch_size=settings.model.batch_size,
        cache=connections.feature_cache(settings),
        stats=stats,
    )
    folder = staging.run_folder(settings.run.staging_dir, chunk.run_id)
    path = f"{folder}/chunk-{chunk.index:05d}.scores.json"
    payload = {
        "model": asdict(model.info),
        "scores": [score_to_json(s) for s in scores],
        "stay_starts": {
            t.patient_id: t.stay_start.isoformat() for t in timelines if t.stay_start is not None
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
        [],
        scores_path=path,
        counts={
            "scored": len({s.patient_id for s in scores}),
            "scores": len(scores),
            "backbone_crops": stats.crops_computed,
            "cxrs_features_cached": stats.cxrs_cached,
        },
        timings={"model_load": model.load_seconds, "score.backbone": stats.backbone_s},
    )


def write_back_chunk(settings: Settings, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Publish a chunk: RiskAssessments to the sink first, then rows to the results store."""
    from dipro_fhir.scoring.score import ModelInfo
    from dipro_fhir.timeline import MappingIssue
    from dipro_fhir.writeback.assessment import AssessmentOptions
    from dipro_fhir.writeback.write import publish_chunk

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
    report, _ = publish_chunk(
        connections.result_sink(settings),
        connections.result_store(settings),
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
    return _next(
        chunk,
        "writeback",
        started,
        list(report.failures),
        counts={"written": report.written, "unchanged": report.unchanged},
    )


def fail_chunk(manifest: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """A chunk whose ``stage`` task failed for good: every patient fails there, retriable.

    The scheduler calls this for chunks that produced no output, so :func:`finalize_run`
    records their patients instead of losing them.
    """
    chunk = ChunkManifest.from_xcom(manifest)
    reason = (stage, "task-failed", "the chunk's task failed after its retries", True)
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
        staging.remove_run(settings.run.staging_dir, chunks[0].run_id)
    if status == "failed":
        raise RunFailed(
            f"{summary['failed_patients']} of {summary['patients']} patients failed "
            f"({share:.0%} > limit {settings.run.max_failed_share:.0%}); reasons: "
            f"{summary['failure_reasons']}"
        )
    return summary


def _data_quality(settings: Settings, chunks: Sequence[ChunkManifest]) -> dict[str, Any]:
    from dipro.checkpoint import read_card
    from dipro_fhir.run_quality import finish_quality

    name = read_card(settings.model.checkpoint).name
    return finish_quality(settings, chunks, pipeline=PIPELINE, model_name=name)


def _record_run_end(
    settings: Settings, chunks: Sequence[ChunkManifest], summary: dict[str, Any]
) -> None:
    from dipro.checkpoint import read_card

    store = connections.result_store(settings)
    run_id = RunId(chunks[0].run_id)
    for chunk in chunks:
        if "written" not in chunk.counts and chunk.failures:
            store.record_chunk(run_id, [], chunk.failure_records())
    counts = {k: v for k, v in summary.items() if isinstance(v, int)}
    status = summary["status"]
    store.finish_run(run_id, status=status, counts=counts, timings_s=summary["timings_s"])
    retriable = any(f[4] for chunk in chunks for f in chunk.failures)
    if status != "failed" and not retriable:
        card = read_card(settings.model.checkpoint)
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
    for i, manifest in enumerate(manifests, start=1):
        for stage, step in (
            ("extract", extract_chunk),
            ("score", score_chunk),
            ("writeback", write_back_chunk),
        ):
            manifest = step(settings, manifest)
            if progress is not None:
                progress(stage, i, len(manifests))
        done.append(manifest)
    return finalize_run(settings, done)
