"""A run's data-quality summary in the results database (table ``data_quality``).

One row per count (see :class:`~dipro_fhir.store.models.DataQualityRow`), unique on
``(run_id, kind, item)``; recording replaces the run's rows in one transaction, so
finalising a run twice changes nothing. Reading it back gives a
:class:`~dipro_fhir.mapping.quality.DataQuality`; :func:`previous_success` finds the night
a run is compared with: the latest *successful* run of the same pipeline and model whose
as-of time is earlier.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, Table, delete, select

from dipro_fhir.core.timeline import RunId
from dipro_fhir.mapping.quality import DataQuality
from dipro_fhir.store.models import DataQualityRow, Run
from dipro_fhir.store.results import as_utc

ITEM_LENGTH: Final[int] = 250
_COUNTS: Final[dict[str, str]] = {
    "unmapped-code": "unmapped_codes",
    "variable-coverage": "variable_patients",
    "image-problem": "image_problems",
    "unattributed-problem": "unattributed_problems",
    "image-flag": "image_flags",
}


def _rows(run_id: RunId, quality: DataQuality) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"kind": "patients", "item": "", "count": quality.patients, "share": None, "detail": ""}
    ]
    coverage = quality.coverage()
    for kind, attribute in _COUNTS.items():
        for item, count in getattr(quality, attribute).items():
            rows.append(
                {
                    "kind": kind,
                    "item": item[:ITEM_LENGTH],
                    "count": int(count),
                    "share": coverage.get(item) if kind == "variable-coverage" else None,
                    "detail": quality.code_displays.get(item, "")
                    if kind == "unmapped-code"
                    else "",
                }
            )
    return [{"run_id": run_id, **row} for row in rows]


def record_data_quality(engine: Engine, run_id: RunId, quality: DataQuality) -> int:
    """Replace the run's data-quality rows with ``quality``'s, in one transaction.

    Returns:
        The number of rows written.
    """
    table = DataQualityRow.__table__
    assert isinstance(table, Table)
    rows = _rows(run_id, quality)
    with engine.begin() as conn:
        conn.execute(delete(table).where(table.c.run_id == run_id))
        conn.execute(table.insert(), rows)
    return len(rows)


def read_data_quality(engine: Engine, run_id: RunId) -> DataQuality | None:
    """The run's summary, or ``None`` when none was recorded."""
    stmt = select(DataQualityRow).where(DataQualityRow.run_id == run_id)
    with engine.connect() as conn:
        rows = conn.execute(stmt.order_by(DataQualityRow.id)).mappings().all()
    if not rows:
        return None
    data: dict[str, Any] = {attribute: {} for attribute in _COUNTS.values()}
    data["code_displays"] = {}
    for row in rows:
        if row["kind"] == "patients":
            data["patients"] = row["count"]
        elif row["kind"] in _COUNTS:
            data[_COUNTS[row["kind"]]][row["item"]] = row["count"]
            if row["kind"] == "unmapped-code" and row["detail"]:
                data["code_displays"][row["item"]] = row["detail"]
    return DataQuality.from_json(data)


def previous_success(
    engine: Engine, *, pipeline: str, model_name: str, before: datetime
) -> RunId | None:
    """The latest successful nightly run of ``pipeline``/``model_name`` with ``as_of <
    before`` (manual and backfill runs are never a baseline)."""
    stmt = (
        select(Run.id)
        .where(
            Run.pipeline == pipeline,
            Run.model_name == model_name,
            Run.status == "success",
            Run.kind == "nightly",
            Run.as_of < as_utc(before),
        )
        .order_by(Run.as_of.desc(), Run.finished_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        found = conn.execute(stmt).scalar_one_or_none()
    return None if found is None else RunId(found)
