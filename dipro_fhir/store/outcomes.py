"""Outcomes of scored stays in the results database (table ``outcomes``), and the labelled
scores the monitor measures.

An outcome row belongs to one mortality score row (``scores.id``): the stay that score was
about, as the monitor found it later. Only scores of *nightly* runs are followed (a manual
run's or a backfill's scores are not the night's record), retracted scores are not. Rows are
upserted on ``score_id``, so gathering a night twice changes nothing; a ``known`` outcome is
never looked up again. Nothing here writes to ``scores``: an outcome never changes the score it
judges (no look-ahead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, Table, and_, or_, select
from sqlalchemy.orm import aliased

from dipro_fhir.core.scores import MORTALITY_OUTCOME
from dipro_fhir.store.models import OutcomeRow, Run, ScoreRow
from dipro_fhir.store.runs import as_utc, insert_for

#: Outcome statuses: the stay goes on, its outcome is known, or it is gone from FHIR.
OUTCOME_STATUSES: Final[tuple[str, ...]] = ("pending", "known", "missing")


@dataclass(frozen=True, slots=True)
class ScoreToFollow:
    """A nightly mortality score whose outcome is not known yet."""

    score_id: int
    patient_id: str
    encounter_id: str | None
    as_of: datetime
    model_version: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of the stay of one score (see :class:`~dipro_fhir.store.models.OutcomeRow`).

    Attributes:
        score_id: The mortality score row.
        status: ``pending``, ``known`` or ``missing``.
        died: In-hospital death (``None`` unless known).
        los_days: The stay's length in days, once it has ended.
        los_bin: Its ``dipro.vocab.LOS_BINS`` index (``None`` under 2 days or not ended).
        progression: Per finding, the change of the latest CXR pair before the score
            (``dipro.vocab.PROGRESSION_CLASSES`` index, 3 = not reported); ``None``: no pair.
        lead_time_h: Hours from the score to the death (deaths only).
        sex, age_band, race_ethnicity, unit: The groups the stay is counted in.
        checked_at: The monitor night that looked last.
        open_days: A pending stay's days from its start to ``checked_at`` (``None`` when
            the stay has ended or its start is not known).
    """

    score_id: int
    status: str
    died: bool | None
    los_days: float | None
    los_bin: int | None
    progression: tuple[int, ...] | None
    lead_time_h: float | None
    sex: str
    age_band: str
    race_ethnicity: str
    unit: str
    checked_at: datetime
    open_days: float | None = None


@dataclass(frozen=True, slots=True)
class LabelledScore:
    """A nightly score with its stay's outcome row (any status), for the monitor's figures."""

    score_id: int
    patient_id: str
    encounter_id: str | None
    as_of: datetime
    model_name: str
    model_version: str
    probability: float
    risk_level: str | None
    path: str
    outcome: Outcome | None


def _nightly_mortality() -> Any:
    return and_(
        ScoreRow.task == "mortality",
        ScoreRow.outcome == MORTALITY_OUTCOME,
        ScoreRow.retracted_at.is_(None),
        Run.kind == "nightly",
    )


def scores_to_follow(engine: Engine, as_of: datetime) -> list[ScoreToFollow]:
    """Nightly mortality scores made by ``as_of`` with no outcome, or one not yet known."""
    stmt = (
        select(
            ScoreRow.id,
            ScoreRow.patient_id,
            ScoreRow.encounter_id,
            ScoreRow.as_of,
            ScoreRow.model_version,
        )
        .join(Run, Run.id == ScoreRow.run_id)
        .outerjoin(OutcomeRow, OutcomeRow.score_id == ScoreRow.id)
        .where(_nightly_mortality(), ScoreRow.as_of <= as_utc(as_of))
        .where(or_(OutcomeRow.score_id.is_(None), OutcomeRow.status != "known"))
        .order_by(ScoreRow.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [ScoreToFollow(r[0], r[1], r[2], as_utc(r[3]), r[4]) for r in rows]


def record_outcomes(engine: Engine, outcomes: Sequence[Outcome], known_at: datetime) -> int:
    """Upsert outcomes in one transaction; a newly ``known`` one gets ``known_at``.

    Returns:
        Rows written.
    """
    if not outcomes:
        return 0
    table = OutcomeRow.__table__
    assert isinstance(table, Table)
    rows = [
        {
            **asdict(o),
            "progression": None if o.progression is None else list(o.progression),
            "checked_at": as_utc(o.checked_at),
            "known_at": as_utc(known_at) if o.status == "known" else None,
        }
        for o in outcomes
    ]
    stmt = insert_for(engine, table)
    new = stmt.excluded  # type: ignore[attr-defined]
    columns = [c.name for c in table.columns if c.name != "score_id"]
    stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=["score_id"],
        set_={name: getattr(new, name) for name in columns},
        where=table.c.status != "known",
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)
    return len(rows)


def _outcome(row: Any) -> Outcome | None:
    if row.status is None:
        return None
    return Outcome(
        score_id=row.id,
        status=row.status,
        died=row.died,
        los_days=row.los_days,
        los_bin=row.los_bin,
        progression=None if row.progression is None else tuple(row.progression),
        lead_time_h=row.lead_time_h,
        sex=row.sex,
        age_band=row.age_band,
        race_ethnicity=row.race_ethnicity,
        unit=row.unit,
        checked_at=as_utc(row.checked_at),
        open_days=row.open_days,
    )


def labelled_scores(
    engine: Engine, *, model_version: str, since: datetime, until: datetime
) -> list[LabelledScore]:
    """Nightly mortality scores of ``model_version`` with ``since < as_of <= until``, each
    with its outcome row (``None`` when never gathered), oldest first."""
    stmt = (
        select(
            ScoreRow.id,
            ScoreRow.patient_id,
            ScoreRow.encounter_id,
            ScoreRow.as_of,
            ScoreRow.model_name,
            ScoreRow.model_version,
            ScoreRow.probability,
            ScoreRow.risk_level,
            ScoreRow.path,
            OutcomeRow.status,
            OutcomeRow.died,
            OutcomeRow.los_days,
            OutcomeRow.los_bin,
            OutcomeRow.progression,
            OutcomeRow.lead_time_h,
            OutcomeRow.sex,
            OutcomeRow.age_band,
            OutcomeRow.race_ethnicity,
            OutcomeRow.unit,
            OutcomeRow.checked_at,
            OutcomeRow.open_days,
        )
        .join(Run, Run.id == ScoreRow.run_id)
        .outerjoin(OutcomeRow, OutcomeRow.score_id == ScoreRow.id)
        .where(
            _nightly_mortality(),
            ScoreRow.model_version == model_version,
            ScoreRow.as_of > as_utc(since),
            ScoreRow.as_of <= as_utc(until),
        )
        .order_by(ScoreRow.as_of, ScoreRow.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        LabelledScore(
            score_id=r.id,
            patient_id=r.patient_id,
            encounter_id=r.encounter_id,
            as_of=as_utc(r.as_of),
            model_name=r.model_name,
            model_version=r.model_version,
            probability=r.probability,
            risk_level=r.risk_level,
            path=r.path,
            outcome=_outcome(r),
        )
        for r in rows
    ]


def task_probabilities(
    engine: Engine, *, task: str, model_version: str, since: datetime, until: datetime
) -> dict[int, dict[str, float]]:
    """The ``task`` scores (``los``, ``progression``) made beside each nightly mortality score
    of ``model_version`` with ``since < as_of <= until``: mortality score id -> outcome code
    -> probability. Beside means the same patient, as-of time and version (the natural key
    of a score, whichever run wrote it); retracted scores are left out."""
    death = aliased(ScoreRow)
    stmt = (
        select(death.id, ScoreRow.outcome, ScoreRow.probability)
        .join(
            death,
            and_(
                death.model_version == ScoreRow.model_version,
                death.patient_id == ScoreRow.patient_id,
                death.as_of == ScoreRow.as_of,
                death.task == "mortality",
                death.outcome == MORTALITY_OUTCOME,
                death.retracted_at.is_(None),
            ),
        )
        .join(Run, Run.id == death.run_id)
        .where(
            Run.kind == "nightly",
            ScoreRow.task == task,
            ScoreRow.retracted_at.is_(None),
            ScoreRow.model_version == model_version,
            ScoreRow.as_of > as_utc(since),
            ScoreRow.as_of <= as_utc(until),
        )
    )
    out: dict[int, dict[str, float]] = {}
    with engine.connect() as conn:
        for score_id, outcome, probability in conn.execute(stmt):
            out.setdefault(int(score_id), {})[str(outcome)] = float(probability)
    return out
