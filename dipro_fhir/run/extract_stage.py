"""Stage 2 of a run (after :mod:`~dipro_fhir.run.plan`): extract a chunk's patients.

:func:`extract_chunk` extracts and maps every patient of a chunk (each inside its own boundary,
:func:`~dipro_fhir.run.extract.extract_patient`) into one staging file of timelines, which
:func:`~dipro_fhir.run.score_stage.score_chunk` reads next. A chunk fails whole only when the
first ``run.outage_after`` patients in a row found the sources unavailable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dipro_fhir.core import staging
from dipro_fhir.core.errors import SourceUnavailable
from dipro_fhir.core.manifest import ChunkManifest
from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import EncounterId, PatientId, PatientTimeline
from dipro_fhir.run import audit, connections
from dipro_fhir.run.stage_common import heartbeat, next_manifest

if TYPE_CHECKING:
    from dipro_fhir.fhir.source import FhirSource


def extract_chunk(settings: Settings, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Extract and map every patient of a chunk into one staging file of timelines.

    With the feature cache on, instances cached for the checkpoint's backbone are not
    retrieved (:class:`~dipro_fhir.scoring.features.CachedImages`).
    """
    from dipro_fhir.scoring.card import read_model_card

    chunk = ChunkManifest.from_xcom(manifest)
    started = time.perf_counter()
    heartbeat(settings, chunk)
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
    from dipro_fhir.run.extract import QualityCounter, StageTimer, extract_options, extract_patient
    from dipro_fhir.run.quality import chunk_orphans
    from dipro_fhir.scoring.features import CachedImages

    cache = connections.feature_cache(settings)
    lookup = None
    if cache is not None:
        lookup = CachedImages(cache, read_backbone_digest(settings.model.checkpoint))
    options = extract_options(
        settings, crop_size=config.crop_size, max_cxrs=config.max_cxrs, features=lookup
    )
    fhir, search_path = chunk_source(settings, chunk, observers)
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
    return next_manifest(
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
            **({search_path: 1} if search_path else {}),
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
) -> tuple[FhirSource, str | None]:
    """A chunk's FHIR source: the run's Bulk export when it has one, else the configured
    source, prefetched for the chunk when it batches its searches; and, for a REST source,
    the summary count that says which search path it took (``batched_search_chunks`` or
    ``per_patient_search_chunks``)."""
    from dipro_fhir.fhir.batched import prefetch_chunk
    from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource
    from dipro_fhir.fhir.source import HttpFhirSource

    if chunk.ndjson_dir:
        return NdjsonFhirSource(chunk.ndjson_dir, connections.input_limits(settings)), None
    source = connections.fhir_source(settings, observers=observers)
    patients = [p for p, _ in chunk.patients]
    batched = prefetch_chunk(source, patients, chunk.as_of_time, settings.run.window_hours)
    if not isinstance(source, HttpFhirSource):
        return source, None
    return source, "batched_search_chunks" if batched else "per_patient_search_chunks"


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
