"""The results store: runs, scores, failures, data problems and watermarks in SQL.

Every write of a chunk is one transaction (all rows of the chunk or none) and idempotent:
rows are upserted on their natural keys with ``INSERT ... ON CONFLICT`` (PostgreSQL in
production, SQLite's equivalent for the embedded demo), so re-recording a chunk after a crash
fills in exactly what is missing and changes nothing else.

A score row keeps the run that first wrote it; a later run of the same natural key
``(model_version, task, patient_id, as_of, outcome)`` updates only its values (identical for a
deterministic model) and fills in ``fhir_resource_id`` when the earlier run had none.

Run state (start, heartbeat, end, superseded failures, the night lock) is in
:mod:`dipro_fhir.store.runs`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RowMapping, Table, func, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.sql.dml import Insert

from dipro_fhir.core.risk import RiskThresholds, classify_risk
from dipro_fhir.core.scores import PatientFailure, Score
from dipro_fhir.core.timeline import NO_PATIENT, MappingIssue, PatientId, RunId
from dipro_fhir.store.models import (
    PATIENT_ID_LENGTH,
    RESOURCE_LENGTH,
    DataProblemRow,
    PatientFailureRow,
    ScoreRow,
    Watermark,
)
from dipro_fhir.store.retry import DEFAULT_RETRY, StoreRetry, call_with_retry, retried
from dipro_fhir.store.runs import RUN_STATUSES, RunRecord, RunStateStore, as_utc, insert_for

T = TypeVar("T")

_LOG = logging.getLogger(__name__)

SCORE_KEY = ("model_version", "task", "patient_id", "as_of", "outcome")


@dataclass(frozen=True, slots=True)
class ChunkCounts:
    """How many rows of each kind a chunk submitted (inserted or already present)."""

    scores: int
    failures: int
    problems: int


@dataclass(frozen=True, slots=True)
class StoredScore:
    """A score row as read back from the store."""

    run_id: RunId
    patient_id: PatientId
    encounter_id: str | None
    task: str
    outcome: str
    probability: float
    risk_level: str | None
    path: str
    fhir_resource_id: str | None
    model_name: str
    model_version: str
    as_of: datetime


def stored_score(row: RowMapping) -> StoredScore:
    """A ``scores`` row (its columns by name) as a :class:`StoredScore`."""
    return StoredScore(
        run_id=RunId(row["run_id"]),
        patient_id=PatientId(row["patient_id"]),
        encounter_id=row["encounter_id"],
        task=row["task"],
        outcome=row["outcome"],
        probability=row["probability"],
        risk_level=row["risk_level"],
        path=row["path"],
        fhir_resource_id=row["fhir_resource_id"],
        model_name=row["model_name"],
        model_version=row["model_version"],
        as_of=as_utc(row["as_of"]),
    )


class ResultStore(RunStateStore):
    """Runs, scores and failures in a SQL database migrated with :func:`upgrade_database`.

    Args:
        engine: A SQLAlchemy engine (PostgreSQL, or SQLite for the embedded demo).
        thresholds: Probability thresholds of the stored ``risk_level`` (the same as the
            RiskAssessments' ``qualitativeRisk``).
        retry: How long an operation is repeated while the database is unreachable
            (:mod:`dipro_fhir.store.retry`).
    """

    def __init__(
        self,
        engine: Engine,
        thresholds: RiskThresholds | None = None,
        retry: StoreRetry = DEFAULT_RETRY,
    ) -> None:
        self.engine = engine
        self.thresholds = thresholds or RiskThresholds()
        self.retry = retry

    def with_retry(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` (a store function of this engine) under this store's retries
        (:mod:`dipro_fhir.store.retry`)."""
        return call_with_retry(self.engine, self.retry, what, call)

    @retried
    def record_chunk(
        self,
        run_id: RunId,
        scores: Sequence[Score],
        failures: Sequence[PatientFailure] = (),
        issues: Mapping[PatientId, Sequence[MappingIssue]] | None = None,
        fhir_ids: Mapping[tuple[PatientId, str], str] | None = None,
    ) -> ChunkCounts:
        """Upsert one chunk's scores, failures and data problems in one transaction.

        Args:
            run_id: The run, already started with :meth:`start_run`.
            scores: The chunk's scores.
            failures: Patients of the chunk that failed at any stage.
            issues: Data problems per patient, from the timelines.
            fhir_ids: The RiskAssessment id per ``(patient_id, task)`` once written; a chunk
                holds one as-of time and model version, so the pair is unambiguous.
        """
        score_rows = [self._score_row(run_id, s, fhir_ids or {}) for s in scores]
        failure_rows = [
            {
                "run_id": run_id,
                "patient_id": f.patient_id,
                "stage": f.stage,
                "reason": f.reason,
                "detail": f.detail,
                "retriable": f.retriable,
                "reason_class": f.reason_class,
                "superseded": False,
            }
            for f in failures
        ]
        problem_rows = [
            {
                "run_id": run_id,
                "patient_id": patient,
                "code": issue.code,
                "resource": (issue.resource or "")[:RESOURCE_LENGTH],
                "detail": issue.detail,
            }
            for patient, found in (issues or {}).items()
            for issue in found
        ]
        try:
            with self.engine.begin() as conn:
                self._write_rows(conn, score_rows, failure_rows, problem_rows)
        except (DataError, IntegrityError) as exc:
            # One patient's rows the database refuses must not cost the chunk: record
            # patient by patient, and a patient whose rows are refused as failed.
            _LOG.warning(
                "run %s chunk refused by the database (%s); recording patient by patient",
                run_id,
                type(exc).__name__,
            )
            failure_rows = self._record_each(run_id, score_rows, failure_rows, problem_rows)
        _LOG.info(
            "run %s chunk recorded: %d scores, %d failures, %d data problems",
            run_id,
            len(score_rows),
            len(failure_rows),
            len(problem_rows),
        )
        return ChunkCounts(len(score_rows), len(failure_rows), len(problem_rows))

    def _write_rows(
        self,
        conn: Connection,
        score_rows: Sequence[dict[str, Any]],
        failure_rows: Sequence[dict[str, Any]],
        problem_rows: Sequence[dict[str, Any]],
    ) -> None:
        if score_rows:
            conn.execute(self._upsert_scores(), list(score_rows))
        if failure_rows:
            conn.execute(self._upsert_failures(), list(failure_rows))
        if problem_rows:
            conn.execute(self._insert_problems(), list(problem_rows))

    def _record_each(
        self,
        run_id: RunId,
        score_rows: Sequence[dict[str, Any]],
        failure_rows: Sequence[dict[str, Any]],
        problem_rows: Sequence[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Record rows one patient per transaction; return the failure rows as stored."""
        patients = dict.fromkeys(
            str(r["patient_id"]) for r in (*score_rows, *failure_rows, *problem_rows)
        )
        stored: list[dict[str, Any]] = []
        for patient in patients:

            def own(rows: Sequence[dict[str, Any]], p: str = patient) -> list[dict[str, Any]]:
                return [r for r in rows if r["patient_id"] == p]

            try:
                with self.engine.begin() as conn:
                    self._write_rows(conn, own(score_rows), own(failure_rows), own(problem_rows))
                stored += own(failure_rows)
            except (DataError, IntegrityError) as exc:
                fits = len(patient) <= PATIENT_ID_LENGTH
                row = {
                    "run_id": run_id,
                    "patient_id": patient if fits else NO_PATIENT,
                    "stage": "writeback",
                    "reason": "store-rejected",
                    "detail": f"the database refused the patient's rows ({type(exc).__name__})",
                    "retriable": False,
                    "reason_class": "internal",
                    "superseded": False,
                }
                with self.engine.begin() as conn:
                    conn.execute(self._upsert_failures(), [row])
                stored.append(row)
        return stored

    def _score_row(
        self, run_id: RunId, score: Score, fhir_ids: Mapping[tuple[PatientId, str], str]
    ) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "patient_id": score.patient_id,
            "encounter_id": score.encounter_id,
            "task": score.task,
            "outcome": score.outcome,
            "probability": score.probability,
            "risk_level": classify_risk(score.probability, self.thresholds),
            "path": score.path,
            "fhir_resource_id": fhir_ids.get((score.patient_id, score.task)),
            "model_name": score.model_name,
            "model_version": score.model_version,
            "as_of": as_utc(score.as_of),
        }

    def _upsert_scores(self) -> Insert:
        table = ScoreRow.__table__
        assert isinstance(table, Table)
        stmt = insert_for(self.engine, table)
        new = stmt.excluded  # type: ignore[attr-defined]
        changed = (
            table.c.probability.is_distinct_from(new.probability)
            | table.c.risk_level.is_distinct_from(new.risk_level)
            | table.c.path.is_distinct_from(new.path)
            | table.c.encounter_id.is_distinct_from(new.encounter_id)
            | (table.c.fhir_resource_id.is_(None) & new.fhir_resource_id.is_not(None))
        )
        return stmt.on_conflict_do_update(  # type: ignore[attr-defined,no-any-return]
            index_elements=list(SCORE_KEY),
            set_={
                "probability": new.probability,
                "risk_level": new.risk_level,
                "path": new.path,
                "encounter_id": new.encounter_id,
                "fhir_resource_id": func.coalesce(new.fhir_resource_id, table.c.fhir_resource_id),
            },
            where=changed,
        )

    def _upsert_failures(self) -> Insert:
        table = PatientFailureRow.__table__
        assert isinstance(table, Table)
        stmt = insert_for(self.engine, table)
        new = stmt.excluded  # type: ignore[attr-defined]
        return stmt.on_conflict_do_update(  # type: ignore[attr-defined,no-any-return]
            index_elements=["run_id", "patient_id", "stage", "reason"],
            set_={
                "detail": new.detail,
                "retriable": new.retriable,
                "reason_class": new.reason_class,
                "superseded": False,
            },
        )

    def _insert_problems(self) -> Insert:
        table = DataProblemRow.__table__
        assert isinstance(table, Table)
        return insert_for(self.engine, table).on_conflict_do_nothing(  # type: ignore[attr-defined,no-any-return]
            index_elements=["run_id", "patient_id", "code", "resource", "detail"]
        )

    @retried
    def watermark(self, pipeline: str, model_name: str) -> datetime | None:
        """Return the as-of time of the last successful run, or ``None`` before the first."""
        stmt = select(Watermark.as_of).where(
            Watermark.pipeline == pipeline, Watermark.model_name == model_name
        )
        with self.engine.connect() as conn:
            found = conn.execute(stmt).scalar_one_or_none()
        return None if found is None else as_utc(found)

    @retried
    def set_watermark(self, pipeline: str, model_name: str, as_of: datetime, run_id: RunId) -> None:
        """Move the watermark forward to ``as_of``; an older ``as_of`` (a backfill) is ignored."""
        table = Watermark.__table__
        assert isinstance(table, Table)
        row = {
            "pipeline": pipeline,
            "model_name": model_name,
            "as_of": as_utc(as_of),
            "run_id": run_id,
            "updated_at": datetime.now(UTC),
        }
        stmt = insert_for(self.engine, table).values(row)
        new = stmt.excluded  # type: ignore[attr-defined]
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=["pipeline", "model_name"],
            set_={"as_of": new.as_of, "run_id": new.run_id, "updated_at": new.updated_at},
            where=table.c.as_of < new.as_of,
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    @retried
    def scores(
        self, *, patient_id: PatientId | None = None, model_version: str | None = None
    ) -> list[StoredScore]:
        """Return stored scores, optionally for one patient or model version."""
        stmt = select(ScoreRow).order_by(ScoreRow.id)
        if patient_id is not None:
            stmt = stmt.where(ScoreRow.patient_id == patient_id)
        if model_version is not None:
            stmt = stmt.where(ScoreRow.model_version == model_version)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [stored_score(r) for r in rows]

    @retried
    def failures(self, run_id: RunId) -> list[PatientFailure]:
        """Return the failures recorded for a run."""
        stmt = select(PatientFailureRow).where(PatientFailureRow.run_id == run_id)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(PatientFailureRow.id)).mappings().all()
        return [
            PatientFailure(
                PatientId(r["patient_id"]), r["stage"], r["reason"], r["detail"], r["retriable"]
            )
            for r in rows
        ]


__all__ = ["RUN_STATUSES", "ChunkCounts", "ResultStore", "RunRecord", "StoredScore", "as_utc"]
