"""Stage 3 of a run: score a chunk's timelines with the model.

:func:`score_chunk` reads the timelines :func:`~dipro_fhir.run.extract_stage.extract_chunk`
staged and writes the scores (with the model, stay starts and mapping issues) to a staging
JSON file for :func:`~dipro_fhir.run.writeback_stage.write_back_chunk`, and summarises the
scored patients' inputs in the manifest (:mod:`dipro_fhir.mapping.profile`: what the monitor
measures drift on). When a batch fails,
each patient is scored alone, so a defect fails only its patient. A patient with no usable
data in its window (no mapped EHR value, no placed radiograph) is not scored: it is recorded
as a ``no-usable-data`` failure of the score stage and gets no RiskAssessment.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from dipro_fhir.core import staging
from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.core.manifest import ChunkManifest, score_to_json
from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.threads import use_torch_threads
from dipro_fhir.core.timeline import PatientId, RunId
from dipro_fhir.mapping.profile import profile_timelines
from dipro_fhir.run import connections
from dipro_fhir.run.stage_common import heartbeat, next_manifest

logger = logging.getLogger(__name__)

NO_DATA_DETAIL = "no mapped EHR value and no placed radiograph in the observation window"


def score_chunk(settings: Settings, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Score a chunk's timelines; the scores go to a staging JSON file."""
    from dipro_fhir.scoring.features import FeatureStats
    from dipro_fhir.scoring.gate import check_validation
    from dipro_fhir.scoring.scorer import (
        NO_USABLE_DATA,
        has_usable_data,
        load_model,
        score_timelines,
    )

    chunk = ChunkManifest.from_xcom(manifest)
    started = time.perf_counter()
    heartbeat(settings, chunk)
    use_torch_threads(settings.model.torch_threads)
    model = load_model(settings.model.checkpoint, settings.model.device)
    check_validation(model.card, settings.model, settings.model.checkpoint)
    assert chunk.timelines_path is not None, "score_chunk needs an extracted chunk"
    staged = staging.load_timelines(chunk.timelines_path)
    run_id = RunId(chunk.run_id)
    timelines = [t for t in staged if has_usable_data(t)]
    failures = [
        PatientFailure(t.patient_id, "score", NO_USABLE_DATA, NO_DATA_DETAIL, False)
        for t in staged
        if not has_usable_data(t)
    ]
    cache = connections.feature_cache(settings)
    stats = FeatureStats()
    try:
        scores = (
            score_timelines(
                model,
                timelines,
                run_id=run_id,
                batch_size=settings.model.batch_size,
                cache=cache,
                stats=stats,
            )
            if timelines
            else []
        )
    except Exception:  # a batch failed: find its patient, score the rest
        scores, broken = [], []
        for timeline in timelines:
            try:
                scores += score_timelines(
                    model, [timeline], run_id=run_id, batch_size=1, cache=cache, stats=stats
                )
            except Exception as exc:  # the patient boundary
                broken.append(_score_failure(timeline.patient_id, exc))
        if timelines and len(broken) == len(timelines):
            raise  # every patient fails alike: the model, not the data
        failures += broken
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
            t.patient_id: [[i.code, i.resource, i.detail] for i in t.issues] for t in staged
        },
    }
    staging.write_bytes(path, json.dumps(payload).encode())
    prep = model.preprocessing
    profile = profile_timelines(
        (t for t in timelines if t.patient_id not in failed), prep.ehr_mean, prep.ehr_std
    )
    done = next_manifest(
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
    done["profile"] = profile.to_json()  # what drift is measured on (issue 25)
    return done


def _score_failure(patient_id: PatientId, exc: Exception) -> PatientFailure:
    from dipro_fhir.core.log import patient_tag

    reason = "model-contract" if isinstance(exc, ModelContractError) else "internal-error"
    logger.warning("patient %s failed in score: %s", patient_tag(patient_id), type(exc).__name__)
    return PatientFailure(patient_id, "score", reason, type(exc).__name__, False)
