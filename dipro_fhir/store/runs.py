"""Run state in the results store: a run's start, heartbeat, end and its truth.

- Starting a run again (its id is deterministic per night) is a new *attempt*: ``attempts``
  counts them; a run already ``success`` stays ``success`` while it is re-run.
- Each chunk step records a *heartbeat*; a ``running`` run without one for
  ``run.stale_after_s`` is marked ``stale`` (killed in flight) by the next plan, and starting
  it again resumes it.
- A failing attempt never downgrades a complete night (:meth:`RunStateStore.finish_run`).
- Failures an attempt does not repeat are *superseded*: kept, no longer open.
- Two runs of one night serialise their write-back on :meth:`RunStateStore.night_lock`
  (a PostgreSQL advisory lock).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, case, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.timeline import RunId
from dipro_fhir.store.models import PatientFailureRow, Run
from dipro_fhir.store.night_lock import NightLock, NoLock
from dipro_fhir.store.retry import StoreRetry, retried

_LOG = logging.getLogger(__name__)

#: ``empty``: the run planned no patient, so it scored nobody (a named outcome, not success).
RUN_STATUSES = ("running", "success", "partial", "failed", "stale", "empty")


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive value (SQLite keeps no offset) is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


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
    mode: str = "live"
    kind: str = "nightly"


def insert_for(engine: Engine, table: Table) -> Insert:
    """Return the dialect's ``INSERT`` that supports ``ON CONFLICT``."""
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upserts need PostgreSQL or SQLite, not {name}")


class RunStateStore:
    """The run-state half of :class:`~dipro_fhir.store.results.ResultStore`."""

    engine: Engine
    retry: StoreRetry

    @retried
    def start_run(
        self,
        run_id: RunId,
        *,
        as_of: datetime,
        model_name: str,
        model_version: str,
        pipeline: str = "dipro_nightly",
        dag_run_id: str | None = None,
        mode: str = "live",
        kind: str = "nightly",
    ) -> None:
        """Record that a run started; starting the same run again marks it running again.

        ``mode``: ``live`` (RiskAssessments are written) or ``shadow`` (the results database
        only); a re-run takes the mode of its latest attempt. ``kind``: ``nightly``,
        ``manual`` or ``backfill``; a night once started as ``nightly`` stays so when a
        backfill re-runs it.
        """
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
            "mode": mode,
            "kind": kind,
        }
        row["heartbeat_at"], row["attempts"] = row["started_at"], 1
        stmt = insert_for(self.engine, table).values(row)
        complete = table.c.status == "success"
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=["id"],
            set_={
                # A complete night stays complete while it is re-run (it is never downgraded).
                "status": case((complete, table.c.status), else_="running"),
                "finished_at": case((complete, table.c.finished_at), else_=None),
                "heartbeat_at": row["heartbeat_at"],
                "attempts": table.c.attempts + 1,
                "mode": mode,
                "kind": case((table.c.kind == "nightly", table.c.kind), else_=kind),
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    @retried
    def heartbeat(self, run_id: RunId) -> None:
        """Record that an attempt of the run is alive (each chunk step calls this)."""
        table = Run.__table__
        assert isinstance(table, Table)
        with self.engine.begin() as conn:
            conn.execute(
                table.update().where(table.c.id == run_id).values(heartbeat_at=datetime.now(UTC))
            )

    @retried
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

    @retried
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
    def night_lock(self, key: str) -> Iterator[NightLock]:
        """Hold a lock on ``key`` (a night and model) for the block: two concurrent runs of
        one night write back one after the other, and the second finds the first's
        resources identical (no needless versions). PostgreSQL advisory lock; SQLite (the
        embedded demo, one process) needs none. Call the yielded lock's ``check`` before
        each write: it re-takes a lock whose session died (:mod:`dipro_fhir.store.night_lock`).
        """
        if self.engine.dialect.name != "postgresql":
            yield NoLock()
            return
        lock = NightLock(self.engine, key, self.retry)
        lock.acquire()
        try:
            yield lock
        finally:
            lock.release()

    @retried
    def finish_run(
        self,
        run_id: RunId,
        *,
        status: str,
        counts: Mapping[str, int] | None = None,
        timings_s: Mapping[str, float] | None = None,
    ) -> str:
        """Record a run's end: ``status`` is ``success``, ``partial``, ``failed`` or ``empty``.

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

    @retried
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
            mode=str(r["mode"]),
            kind=str(r["kind"]),
        )
