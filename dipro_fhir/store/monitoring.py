"""A monitored night in the results database: its row, figures, drift and alerts.

Recording a night replaces everything of that ``(as_of, model_version)`` in one transaction,
so computing a night again (a retried task, a rerun) leaves exactly one copy. The tables hold
figures of groups and counts, never a patient (:mod:`dipro_fhir.store.models`).
Also here: a run's input profile (``input_profiles``), which finalising a run records and the
monitor compares.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, delete, select

from dipro_fhir.store.models import (
    InputProfileRow,
    MonitorAlertRow,
    MonitorDriftRow,
    MonitorFigureRow,
    MonitorNightRow,
    Run,
    ScoreRow,
)
from dipro_fhir.store.runs import as_utc, insert_for


@dataclass(frozen=True, slots=True)
class NightRecord:
    """A monitored night as stored (figures, drift and alerts are rows of their own)."""

    id: str
    as_of: datetime
    model_name: str
    model_version: str
    run_id: str | None
    status: str
    counts: dict[str, Any]
    reference: dict[str, Any]


def night_id(as_of: datetime, model_version: str) -> str:
    """A deterministic id: the same night and version always get the same one."""
    key = f"dipro-fhir:monitor:{as_utc(as_of).isoformat()}:{model_version}"
    return "mon-" + uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:16]


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def record_night(
    engine: Engine,
    night: NightRecord,
    figures: Sequence[Mapping[str, Any]],
    drift: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
) -> None:
    """Replace the night's rows with these, in one transaction (rows without ``night_id``)."""
    nights = _table(MonitorNightRow)
    children = ((MonitorFigureRow, figures), (MonitorDriftRow, drift), (MonitorAlertRow, alerts))
    with engine.begin() as conn:
        # Children first: SQLite does not cascade unless foreign keys are switched on.
        for model, _rows in children:
            table = _table(model)
            conn.execute(delete(table).where(table.c.night_id == night.id))
        conn.execute(delete(nights).where(nights.c.id == night.id))
        conn.execute(
            nights.insert(),
            [
                {
                    "id": night.id,
                    "as_of": as_utc(night.as_of),
                    "model_name": night.model_name,
                    "model_version": night.model_version,
                    "run_id": night.run_id,
                    "status": night.status,
                    "counts": night.counts,
                    "reference": night.reference,
                    "created_at": datetime.now(UTC),
                }
            ],
        )
        for model, rows in children:
            if rows:
                table = _table(model)
                conn.execute(table.insert(), [{**row, "night_id": night.id} for row in rows])


def _night(row: Any) -> NightRecord:
    return NightRecord(
        id=row.id,
        as_of=as_utc(row.as_of),
        model_name=row.model_name,
        model_version=row.model_version,
        run_id=row.run_id,
        status=row.status,
        counts=dict(row.counts or {}),
        reference=dict(row.reference or {}),
    )


def read_nights(
    engine: Engine,
    *,
    model_version: str | None = None,
    until: datetime | None = None,
    run_ids: Sequence[str] | None = None,
) -> list[NightRecord]:
    """Monitored nights, oldest first (of one version, up to ``until``, of the scoring runs
    ``run_ids``, when given)."""
    table = _table(MonitorNightRow)
    stmt = select(table).order_by(table.c.as_of, table.c.model_version)
    if model_version is not None:
        stmt = stmt.where(table.c.model_version == model_version)
    if run_ids is not None:
        stmt = stmt.where(table.c.run_id.in_(list(run_ids)))
    if until is not None:
        stmt = stmt.where(table.c.as_of <= as_utc(until))
    with engine.connect() as conn:
        return [_night(r) for r in conn.execute(stmt).all()]


def _rows(engine: Engine, model: Any, night_ids: Sequence[str]) -> list[dict[str, Any]]:
    if not night_ids:
        return []
    table = _table(model)
    stmt = select(table).where(table.c.night_id.in_(list(night_ids))).order_by(table.c.id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def read_figures(engine: Engine, night_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The figure rows of these nights."""
    return _rows(engine, MonitorFigureRow, night_ids)


def read_drift(engine: Engine, night_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The drift rows of these nights."""
    return _rows(engine, MonitorDriftRow, night_ids)


def read_alerts(engine: Engine, night_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The alert rows of these nights."""
    return _rows(engine, MonitorAlertRow, night_ids)


def record_profile(engine: Engine, run_id: str, profile: Mapping[str, Any]) -> None:
    """Store (or replace) a run's input profile."""
    table = _table(InputProfileRow)
    stmt = insert_for(engine, table).values(run_id=run_id, profile=dict(profile))
    stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=["run_id"],
        set_={"profile": stmt.excluded.profile},  # type: ignore[attr-defined]
    )
    with engine.begin() as conn:
        conn.execute(stmt)


@dataclass(frozen=True, slots=True)
class NightlyRun:
    """A nightly scoring run of a model version, with its input profile (when recorded)."""

    run_id: str
    as_of: datetime
    model_name: str
    model_version: str
    status: str
    profile: dict[str, Any] | None


def nightly_runs(
    engine: Engine, *, model_version: str | None = None, until: datetime | None = None
) -> list[NightlyRun]:
    """Finished nightly runs (success or partial), oldest first, with their profiles."""
    stmt = (
        select(Run.id, Run.as_of, Run.model_name, Run.model_version, Run.status,
               InputProfileRow.profile)
        .outerjoin(InputProfileRow, InputProfileRow.run_id == Run.id)
        .where(Run.kind == "nightly", Run.status.in_(("success", "partial")))
        .order_by(Run.as_of)
    )  # fmt: skip
    if model_version is not None:
        stmt = stmt.where(Run.model_version == model_version)
    if until is not None:
        stmt = stmt.where(Run.as_of <= as_utc(until))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [NightlyRun(r[0], as_utc(r[1]), r[2], r[3], r[4], r[5]) for r in rows]


def run_risks(engine: Engine, run_id: str) -> list[float]:
    """The mortality risks a run scored (not retracted)."""
    stmt = select(ScoreRow.probability).where(
        ScoreRow.run_id == run_id,
        ScoreRow.task == "mortality",
        ScoreRow.retracted_at.is_(None),
    )
    with engine.connect() as conn:
        return [float(p) for p in conn.execute(stmt).scalars()]
