"""A run's data-quality summary across its steps: collected per chunk, finished at the end.

Extraction adds each mapped patient's counts to the chunk's summary
(:class:`~dipro_fhir.run.extract.QualityCounter`) and takes from the FHIR source the problems
that belong to no patient (:func:`chunk_orphans`). :func:`finish_quality` merges the
chunks (a problem of no patient is seen by every chunk that reads the same file, so those
are counted once by their code, resource and detail), records the summary in the results
database (with the scored patients' input profile, :mod:`dipro_fhir.mapping.profile`),
compares it with the previous successful night and returns the part of the run summary that
says so. Counts only: no patient data (DESIGN.md, "nothing vanishes
unreported").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from dipro_fhir.core.manifest import ChunkManifest
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import MappingIssue, RunId
from dipro_fhir.fhir.source import FhirSource
from dipro_fhir.mapping.profile import InputProfile
from dipro_fhir.mapping.quality import (
    DataQuality,
    compare,
    render_quality,
    unattributed_quality,
)
from dipro_fhir.run import connections
from dipro_fhir.store.monitoring import record_profile
from dipro_fhir.store.quality import previous_success, read_data_quality, record_data_quality

logger = logging.getLogger(__name__)

#: Problems of no patient carried per chunk (more are counted, not listed).
MAX_ORPHANS: Final[int] = 2000
#: Unmapped codes listed in the run summary (all of them are in the database).
SUMMARY_CODES: Final[int] = 20


def chunk_orphans(fhir: FhirSource) -> tuple[tuple[str, str, str], ...]:
    """The source's problems of no patient, as ``(code, resource, detail)``, at most
    :data:`MAX_ORPHANS` (a count of the rest is the last entry)."""
    issues = fhir.take_issues()
    kept = tuple((i.code, i.resource or "", i.detail) for i in issues[:MAX_ORPHANS])
    if len(issues) > MAX_ORPHANS:
        kept += (("orphans-not-listed", "", f"{len(issues) - MAX_ORPHANS} more"),)
    return kept


def merged_quality(chunks: Sequence[ChunkManifest]) -> DataQuality:
    """The chunks' summaries merged, each problem of no patient counted once."""
    quality = DataQuality()
    for chunk in chunks:
        quality = quality.merged(DataQuality.from_json(chunk.quality))
    orphans = {issue for chunk in chunks for issue in chunk.orphan_issues}
    return quality.merged(unattributed_quality(MappingIssue(c, r, d) for c, r, d in orphans))


def merged_profile(profiles: Sequence[Mapping[str, Any]]) -> InputProfile:
    """The chunks' input profiles added up."""
    total = InputProfile()
    for profile in profiles:
        total = total.merged(InputProfile.from_json(profile))
    return total


def summary_part(quality: DataQuality, change: dict[str, Any] | None) -> dict[str, Any]:
    """The run summary's ``data_quality`` entry."""
    top = Counter(quality.unmapped_codes).most_common(SUMMARY_CODES)
    return {
        "patients": quality.patients,
        "unmapped_observations": quality.unmapped_observations,
        "unmapped_codes": dict(top),
        "unmapped_code_count": len(quality.unmapped_codes),
        "coverage": {k: round(v, 4) for k, v in quality.coverage().items()},
        "image_problems": dict(quality.image_problems),
        "image_flags": dict(quality.image_flags),
        "unattributed_problems": dict(quality.unattributed_problems),
        "compared_with": change,
    }


def finish_quality(
    settings: Settings, chunks: Sequence[ChunkManifest], *, pipeline: str, model_name: str
) -> dict[str, Any]:
    """Merge, record (unless a dry run), compare with the previous successful night.

    Returns:
        The run summary's ``data_quality`` entry.
    """
    quality = merged_quality(chunks)
    change = None
    if chunks and not chunks[0].dry_run:
        run_id = RunId(chunks[0].run_id)
        store = connections.result_store(settings)
        engine = store.engine
        store.with_retry("data quality", lambda: record_data_quality(engine, run_id, quality))
        profiles = [c.profile for c in chunks if c.profile]
        if profiles:
            profile = merged_profile(profiles).to_json()
            store.with_retry("input profile", lambda: record_profile(engine, run_id, profile))
        previous = store.with_retry(
            "previous night",
            lambda: previous_success(
                engine, pipeline=pipeline, model_name=model_name, before=chunks[0].as_of_time
            ),
        )
        before = (
            None
            if previous is None
            else store.with_retry("data quality", lambda: read_data_quality(engine, previous))
        )
        if previous is not None and before is not None:
            change = compare(quality, before, previous)
    logger.info(
        "data quality: %d patients, %d unmapped Observations in %d codes, %d problems of no "
        "patient",
        quality.patients,
        quality.unmapped_observations,
        len(quality.unmapped_codes),
        sum(quality.unattributed_problems.values()),
    )
    part = summary_part(quality, None if change is None else change.to_json())
    part["text"] = render_quality(quality, change)
    return part
