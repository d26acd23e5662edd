"""Planning a run: the cohort, its ids checked, the run recorded, chunk manifests.

Part of :mod:`dipro_fhir.run.pipeline` (which re-exports everything here). Ids that are not
FHIR ids (from the request, a Group or List, a search) never go past the plan: they are
counted as one ``invalid-id`` failure of no patient on the first chunk. The run is recorded
in the results store (an unreachable database and a missing schema are told apart), after
``running`` runs without a heartbeat are marked stale.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dipro_fhir.core.errors import ConfigError, DiproFhirError, SourceUnavailable
from dipro_fhir.core.limits import is_fhir_id
from dipro_fhir.core.manifest import ChunkManifest, RunRequest, run_id_for
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import NO_PATIENT, RunId
from dipro_fhir.fhir.source import FhirSource
from dipro_fhir.run import audit, connections

logger = logging.getLogger(__name__)

PIPELINE = "dipro_nightly"


def plan_run(settings: Settings, request: RunRequest) -> list[dict[str, Any]]:
    """Choose the cohort, record the run, and split it into chunk manifests.

    Raises:
        ConfigError: The request is inconsistent (naive time, unknown model version).
        ModelContractError: The checkpoint cannot be read.
        ValidationGateError: The checkpoint's validation record is missing or fails the
            site's minimums (:mod:`dipro_fhir.scoring.gate`).
    """
    if request.as_of.tzinfo is None:
        raise ConfigError("as_of must be timezone-aware")
    from dipro_fhir.scoring.card import read_model_card
    from dipro_fhir.scoring.gate import check_validation

    card = read_model_card(settings.model.checkpoint)
    run_id = run_id_for(request, card.version)
    try:
        check_validation(card, settings.model, settings.model.checkpoint)
        if request.model_version and request.model_version != card.version:
            raise ConfigError(
                f"model version {request.model_version!r} requested, checkpoint has "
                f"{card.version!r}"
            )
        with audit.recording(settings, "plan", (card.name, card.version)) as recorder:
            planned = _cohort(settings, request, card.name, audit.observers(recorder))
    except Exception as exc:
        if not request.dry_run:
            _record_plan_failure(settings, request, run_id, card.name, card.version, exc)
        raise
    patients = [(p, e) for p, e in planned if is_fhir_id(p) and (e is None or is_fhir_id(e))]
    invalid = len(planned) - len(patients)
    if not request.dry_run:
        _start_run(settings, request, run_id, card.name, card.version)
    size = settings.run.chunk_size
    attempt = uuid.uuid4().hex[:8]  # this attempt's own staging folder
    chunks = [
        ChunkManifest(
            run_id=run_id,
            index=i // size,
            as_of=request.as_of.astimezone(UTC).isoformat(),
            patients=tuple(patients[i : i + size]),
            dry_run=request.dry_run,
            attempt=attempt,
            kind=request.run_kind,
        ).to_xcom()
        for i in range(0, max(len(patients), 1), size)  # an empty night still finalizes
    ]
    if invalid:
        detail = f"{invalid} cohort entries whose patient or encounter id is not a FHIR id"
        chunks[0]["failures"] = [[NO_PATIENT, "plan", "invalid-id", detail, False]]
        logger.warning("run %s: %d cohort entries with invalid ids skipped", run_id, invalid)
    logger.info("run %s planned: %d patients in %d chunks", run_id, len(patients), len(chunks))
    return chunks


def _start_run(
    settings: Settings, request: RunRequest, run_id: RunId, model_name: str, version: str
) -> None:
    """Record the run; an unreachable database and a missing schema are told apart."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

    store = connections.result_store(settings)
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        raise SourceUnavailable(
            f"the results database is unreachable ({type(exc.orig).__name__})"
        ) from None
    from dipro_fhir.run.retraction import refuse_withdrawn

    try:
        refuse_withdrawn(settings, version, request.as_of)
        store.mark_stale(timedelta(seconds=settings.run.stale_after_s))
        store.start_run(
            run_id,
            as_of=request.as_of,
            model_name=model_name,
            model_version=version,
            pipeline=PIPELINE,
            dag_run_id=request.dag_run_id,
            mode="shadow" if settings.writeback.shadow else "live",
            kind=request.run_kind,
        )
    except (OperationalError, ProgrammingError) as exc:
        raise ConfigError(
            "the results database cannot record the run (no schema?): "
            "run `dipro-fhir db upgrade` first"
        ) from exc


def _record_plan_failure(
    settings: Settings,
    request: RunRequest,
    run_id: RunId,
    model_name: str,
    version: str,
    error: Exception,
) -> None:
    """Record a run whose plan failed as ``failed``, with the error as a problem of no
    patient; a retry that plans starts the same run again. Best effort: with the database
    down, the error itself is what the caller sees."""
    from dipro_fhir.core.scores import PatientFailure

    # The product's own errors carry no patient data; anything else is named by its type.
    detail = str(error) if isinstance(error, DiproFhirError) else type(error).__name__
    retriable = isinstance(error, SourceUnavailable)
    failure = PatientFailure(NO_PATIENT, "plan", "plan-failed", detail[:500], retriable)
    try:
        _start_run(settings, request, run_id, model_name, version)
        store = connections.result_store(settings)
        store.record_chunk(run_id, [], [failure])
        store.finish_run(run_id, status="failed", counts={"patients": 0}, timings_s={})
    except Exception as db_error:  # the plan's own error is the one to raise
        logger.warning(
            "run %s: its failed plan could not be recorded (%s)", run_id, type(db_error).__name__
        )
        return
    logger.warning("run %s: plan failed (%s); recorded as failed", run_id, type(error).__name__)


def _cohort(
    settings: Settings, request: RunRequest, model_name: str, observers: Sequence[Any]
) -> list[tuple[str, str | None]]:
    source = connections.fhir_source(settings, observers=observers)
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
