"""The results store: runs, scores, failures, data problems and watermarks in SQL.

Every write of a chunk is one transaction (all rows of the chunk or none) and idempotent:
rows are upserted on their natural keys with ``INSERT ... ON CONFLICT`` (PostgreSQL in
production, SQLite's equivalent for the embedded demo), so re-recording a chunk after a crash
fills in exactly what is missing and changes nothing else.

A score row keeps the run that first wrote it; a later run of the same natural key
``(model_version, task, patient_id, as_of, outcome)`` updates only its values (identical for a
deterministic model) and fills in ``fhir_resource_id`` when the earlier run had none.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, case, func, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.sql.dml import Insert

from dipro_fhir.scoring.score import PatientFailure, Score
from dipro_fhir.store.models import (
    PATIENT_ID_LENGTH,
    RESOURCE_LENGTH,
    DataProblemRow,
    PatientFailureRow,
    Run,
    ScoreRow,
    Watermark,
)
from dipro_fhir.timeline import NO_PATIENT, MappingIssue, PatientId, RunId
from dipro_fhir.writeback.risk import RiskThresholds, classify_risk

_LOG = logging.getLogger(__name__)

RUN_STATUSES = ("running", "success", "partial", "failed", "stale")
SCORE_KEY = ("model_version", "task", "patient_id", "as_of", "outcome")


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive value (SQLite keeps no offset) is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


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


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as read back from the store."""

    id: RunId
    dag_run_id: str | None
    pipeline: str
    as_of: datetime
    model_name: str
    model_version: str
    status: str
    counts: dict[str, Any]
    timings: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    heartbeat_at: datetime | None = None
    attempts: int = 1


def _insert(engine: Engine, table: Table) -> Insert:
    """Return the dialect's ``INSERT`` that supports ``ON CONFLICT``."""
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upserts need PostgreSQL or SQLite, not {name}")


class ResultStore:
    """Runs, scores and failures in a SQL database migrated with :func:`upgrade_database`.

    Args:
        engine: A SQLAlchemy engine (PostgreSQL, or SQLite for the embedded demo).
        thresholds: Probability thresholds of the stored ``risk_level`` (the same as the
            RiskAssessments' ``qualitativeRisk``).
    """

    def __init__(self, engine: Engine, thresholds: RiskThresholds | None = None) -> None:
        self.engine = engine
        self.thresholds = thresholds or RiskThresholds()

    def start_run(
        self,
        run_id: RunId,
        *,
        as_of: datetime,
        model_name: str,
        model_version: str,
        pipeline: str = "dipro_nightly",
        dag_run_id: str | None = None,
    ) -> None:
        """Record that a run started; starting the same run again marks it running again."""
        table = Run.__table__
        assert isinstance(table, Table)
        row: dict[str, Any] = {
            "id": run_id,
            "dag_run_id": dag_run_id,
            "pipeline": pipeline,
            "as_of": as_utc(as_of),
            "model_name": model_name,
            "model_version": model_version,
            "status": "running",
            "counts": {},
            "timings": {},
            "started_at": datetime.now(UTC),
            "finished_at": None,
        }
        row["heartbeat_at"], row["attempts"] = row["started_at"], 1
        stmt = _insert(self.engine, table).values(row)
        complete = table.c.status == "success"
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=["id"],
            set_={
                # A complete night stays complete while it is re-run (it is never downgraded).
                "status": case((complete, table.c.status), else_="running"),
                "finished_at": case((complete, table.c.finished_at), else_=None),
                "heartbeat_at": row["heartbeat_at"],
                "attempts": table.c.attempts + 1,
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def heartbeat(self, run_id: RunId) -> None:
        """Record that an attempt of the run is alive (each chunk step calls this)."""
        table = Run.__table__
        assert isinstance(table, Table)
        with self.engine.begin() as conn:
            conn.execute(
                table.update().where(table.c.id == run_id).values(heartbeat_at=datetime.now(UTC))
            )

    def mark_stale(self, older_than: timedelta) -> list[RunId]:
        """Mark ``running`` runs with no heartbeat for ``older_than`` as ``stale`` (killed in
        flight); return their ids. Starting such a run again resumes it."""
        table = Run.__table__
        assert isinstance(table, Table)
        limit = datetime.now(UTC) - older_than
        last_seen = func.coalesce(table.c.heartbeat_at, table.c.started_at)
        stmt = (
            table.update()
            .where(table.c.status == "running", last_seen < limit)
            .values(status="stale", finished_at=datetime.now(UTC))
            .returning(table.c.id)
        )
        with self.engine.begin() as conn:
            stale = [RunId(r) for r in conn.execute(stmt).scalars()]
        if stale:
            _LOG.warning("%d stale runs (no heartbeat since %s) marked stale", len(stale), limit)
        return stale

    def supersede_failures(self, run_id: RunId, current: Sequence[PatientFailure]) -> int:
        """Mark the run's failures that ``current`` (the last attempt's) does not repeat as
        superseded: kept as history, no longer the run's open failures. Returns how many."""
        table = PatientFailureRow.__table__
        assert isinstance(table, Table)
        keys = [(f.patient_id, f.stage, f.reason) for f in current]
        stmt = table.update().where(table.c.run_id == run_id, table.c.superseded.is_(False))
        if keys:
            key = tuple_(table.c.patient_id, table.c.stage, table.c.reason)
            stmt = stmt.where(key.not_in(keys))
        with self.engine.begin() as conn:
            count = conn.execute(stmt.values(superseded=True)).rowcount
        return int(count)

    @contextmanager
    def night_lock(self, key: str) -> Iterator[None]:
        """Hold a lock on ``key`` (a night and model) for the block: two concurrent runs of
        one night write back one after the other, and the second finds the first's
        resources identical (no needless versions). PostgreSQL advisory lock; SQLite (the
        embedded demo, one process) needs none."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": number})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": number})
                conn.commit()

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
        stmt = _insert(self.engine, table)
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
        stmt = _insert(self.engine, table)
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
        return _insert(self.engine, table).on_conflict_do_nothing(  # type: ignore[attr-defined,no-any-return]
            index_elements=["run_id", "patient_id", "code", "resource", "detail"]
        )

    def finish_run(
        self,
        run_id: RunId,
        *,
        status: str,
        counts: Mapping[str, int] | None = None,
        timings_s: Mapping[str, float] | None = None,
    ) -> str:
        """Record a run's end: ``status`` is ``success``, ``partial`` or ``failed``.

        Returns:
            The run's status as stored: a run already ``success`` stays so (its counts too).

        Raises:
            KeyError: The run was never started.
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"status {status!r} is not one of {RUN_STATUSES}")
        table = Run.__table__
        assert isinstance(table, Table)
        values: dict[str, Any] = {"status": status, "finished_at": datetime.now(UTC)}
        if counts is not None:
            values["counts"] = dict(counts)
        if timings_s is not None:
            values["timings"] = dict(timings_s)
        with self.engine.begin() as conn:
            stored = conn.execute(
                select(table.c.status).where(table.c.id == run_id).with_for_update()
            ).scalar_one_or_none()
            if stored is None:
                raise KeyError(f"run {run_id} was never started")
            if stored == "success" and status != "success":
                # A complete night is never downgraded by a later, failing attempt.
                _LOG.warning(
                    "run %s: an attempt ended %s; the night stays complete", run_id, status
                )
                return "success"
            conn.execute(table.update().where(table.c.id == run_id).values(values))
        return status

    def watermark(self, pipeline: str, model_name: str) -> datetime | None:
        """Return the as-of time of the last successful run, or ``None`` before the first."""
        stmt = select(Watermark.as_of).where(
            Watermark.pipeline == pipeline, Watermark.model_name == model_name
        )
        with self.engine.connect() as conn:
            found = conn.execute(stmt).scalar_one_or_none()
        return None if found is None else as_utc(found)

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
        stmt = _insert(self.engine, table).values(row)
        new = stmt.excluded  # type: ignore[attr-defined]
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=["pipeline", "model_name"],
            set_={"as_of": new.as_of, "run_id": new.run_id, "updated_at": new.updated_at},
            where=table.c.as_of < new.as_of,
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

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
        return [
            StoredScore(
                run_id=RunId(r["run_id"]),
                patient_id=PatientId(r["patient_id"]),
                encounter_id=r["encounter_id"],
                task=r["task"],
                outcome=r["outcome"],
                probability=r["probability"],
                risk_level=r["risk_level"],
                path=r["path"],
                fhir_resource_id=r["fhir_resource_id"],
                model_name=r["model_name"],
                model_version=r["model_version"],
                as_of=as_utc(r["as_of"]),
            )
            for r in rows
        ]

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

    def run(self, run_id: RunId) -> RunRecord | None:
        """Return a run, or ``None`` when it was never started."""
        with self.engine.connect() as conn:
            r = conn.execute(select(Run).where(Run.id == run_id)).mappings().one_or_none()
        if r is None:
            return None
        finished = r["finished_at"]
        return RunRecord(
            id=RunId(r["id"]),
            dag_run_id=r["dag_run_id"],
            pipeline=r["pipeline"],
            as_of=as_utc(r["as_of"]),
            model_name=r["model_name"],
            model_version=r["model_version"],
            status=r["status"],
            counts=dict(r["counts"]),
            timings=dict(r["timings"]),
            started_at=as_utc(r["started_at"]),
            finished_at=None if finished is None else as_utc(finished),
            heartbeat_at=None if r["heartbeat_at"] is None else as_utc(r["heartbeat_at"]),
            attempts=int(r["attempts"]),
        )
