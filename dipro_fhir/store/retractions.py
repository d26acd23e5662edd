"""Retractions in the results database: the retraction's row and its retracted scores.

A retraction row is upserted on its derived id, so running the same retraction twice (after
a ``kill -9``, or by mistake) finds it again. Marking scores retracted is one transaction per
chunk, after the chunk's RiskAssessments are ``entered-in-error`` on the server (the same
order as write-back: server first, then database), and ``retracted_at`` is set only where it
is still empty, so a re-run changes nothing it already marked. Score upserts of later runs
never touch the two retraction columns, so no later night un-retracts a row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from dipro_fhir.store.models import RetractionRow, ScoreRow
from dipro_fhir.store.results import as_utc
from dipro_fhir.store.runs import insert_for


@dataclass(frozen=True, slots=True)
class RetractionRequest:
    """What to retract: a model version's results, optionally in ``[since, until)`` and for
    some patients only.

    Attributes:
        model_version: The model version whose results are withdrawn.
        reason: Why (written to the retraction's Provenance and the database).
        since: First as-of time retracted (inclusive); ``None``: from the start.
        until: As-of times before this are retracted; ``None``: no end (later nights too).
        patients: Patient ids; empty: every patient.
        model_name: The model's name; ``None``: taken from the stored scores.
    """

    model_version: str
    reason: str
    since: datetime | None = None
    until: datetime | None = None
    patients: tuple[str, ...] = ()
    model_name: str | None = None

    @property
    def retraction_id(self) -> str:
        """A stable id of what is retracted (the reason is not part of it)."""
        parts = [
            "retraction",
            self.model_version,
            self.since.astimezone(UTC).isoformat() if self.since else "",
            self.until.astimezone(UTC).isoformat() if self.until else "",
            *sorted(set(self.patients)),
        ]
        return "ret-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]

    def covers(self, as_of: datetime) -> bool:
        """Whether an as-of time lies in the retracted range."""
        moment = as_utc(as_of)
        after = self.since is None or moment >= as_utc(self.since)
        return after and (self.until is None or moment < as_utc(self.until))


class RetractionStore:
    """Retraction rows and the retracted marks of scores.

    Args:
        engine: The results database, migrated to ``0004`` (retraction) or later.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def model_name(self, model_version: str) -> str | None:
        """Return the model name stored with a version's scores, or ``None``."""
        stmt = select(ScoreRow.model_name).where(ScoreRow.model_version == model_version)
        with self.engine.connect() as conn:
            return conn.execute(stmt.limit(1)).scalar_one_or_none()

    def begin(self, request: RetractionRequest, model_name: str) -> None:
        """Record the retraction as running (again, when it ran before)."""
        table = RetractionRow.__table__
        assert isinstance(table, Table)
        row: dict[str, Any] = {
            "id": request.retraction_id,
            "model_name": model_name,
            "model_version": request.model_version,
            "since": as_utc(request.since) if request.since else None,
            "until": as_utc(request.until) if request.until else None,
            "patients": sorted(set(request.patients)) or None,
            "reason": request.reason,
            "status": "running",
            "counts": {},
            "started_at": datetime.now(UTC),
            "finished_at": None,
        }
        stmt = insert_for(self.engine, table).values(row)
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=["id"], set_={"status": "running", "finished_at": None}
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def mark(self, request: RetractionRequest, fhir_ids: Sequence[str]) -> int:
        """Mark the scores of these RiskAssessments retracted (one transaction).

        Returns:
            Rows marked now (rows marked before are left as they are).
        """
        if not fhir_ids:
            return 0
        return self._mark(ScoreRow.fhir_resource_id.in_(list(fhir_ids)), request)

    def mark_matching(self, request: RetractionRequest) -> int:
        """Mark every not yet retracted score the request covers (also rows without a
        RiskAssessment, whose write-back failed)."""
        return self._mark(None, request)

    def _mark(self, extra: ColumnElement[bool] | None, request: RetractionRequest) -> int:
        table = ScoreRow.__table__
        assert isinstance(table, Table)
        where = [*_covered(request), table.c.retracted_at.is_(None)]
        if extra is not None:
            where.append(extra)
        stmt = (
            table.update()
            .where(and_(*where))
            .values(retracted_at=datetime.now(UTC), retraction_id=request.retraction_id)
        )
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def finish(self, request: RetractionRequest, counts: Mapping[str, int]) -> None:
        """Record the retraction as done with its counts."""
        table = RetractionRow.__table__
        assert isinstance(table, Table)
        stmt = (
            table.update()
            .where(table.c.id == request.retraction_id)
            .values(status="done", counts=dict(counts), finished_at=datetime.now(UTC))
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def retracted_count(self, model_version: str) -> int:
        """Return how many score rows of a version are retracted."""
        stmt = select(func.count(ScoreRow.id)).where(
            ScoreRow.model_version == model_version, ScoreRow.retracted_at.is_not(None)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def withdrawn(self, model_version: str, as_of: datetime) -> bool:
        """Whether a retraction of every patient covers ``as_of`` for this version: a run
        must not publish new results of it."""
        stmt = select(RetractionRow.patients).where(
            RetractionRow.model_version == model_version,
            or_(RetractionRow.since.is_(None), RetractionRow.since <= as_utc(as_of)),
            or_(RetractionRow.until.is_(None), RetractionRow.until > as_utc(as_of)),
        )
        with self.engine.connect() as conn:
            patient_lists = conn.execute(stmt).scalars().all()
        return any(not patients for patients in patient_lists)


def _covered(request: RetractionRequest) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [ScoreRow.model_version == request.model_version]
    if request.since is not None:
        where.append(ScoreRow.as_of >= as_utc(request.since))
    if request.until is not None:
        where.append(ScoreRow.as_of < as_utc(request.until))
    if request.patients:
        where.append(ScoreRow.patient_id.in_(sorted(set(request.patients))))
    return where
