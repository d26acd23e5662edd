"""A patient's latest scores per task, as a person may see them (the CDS Hooks cards).

"Latest" is the newest as-of time among the patient's scores that

* were not retracted (``scores.retracted_at`` is NULL: ``dipro-fhir retract`` withdrew them),
* came from a ``live`` run: a ``shadow`` run scores silently, into this database only, while
  a model is evaluated on a site's patients, and nobody may be shown its results
  (``runs.mode``, migration 0006), and
* are not older than the caller's bound (a nightly score is hours old; a week-old one is
  no longer the patient's state).

Per task the latest as-of time and model version give one RiskAssessment's worth of rows
(every outcome of the task). Two model versions scoring the same night (a new version run
beside the old) give the one whose rows were written last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from dipro_fhir.core.timeline import PatientId
from dipro_fhir.store.models import Run, ScoreRow
from dipro_fhir.store.results import StoredScore, stored_score
from dipro_fhir.store.runs import as_utc


@dataclass(frozen=True, slots=True)
class TaskScores:
    """The latest scores of one patient and task: every outcome of one model version and
    as-of time, and the run that first wrote them."""

    task: str
    scores: tuple[StoredScore, ...]

    @property
    def first(self) -> StoredScore:
        """One of the rows (all share patient, task, model, as-of)."""
        return self.scores[0]


def latest_scores(
    engine: Engine, patient_id: PatientId, *, since: datetime | None = None
) -> dict[str, TaskScores]:
    """The latest live, unretracted scores of a patient per task (module docstring).

    Args:
        engine: The results database.
        patient_id: The FHIR ``Patient`` id.
        since: Leave out scores with an as-of time before this (``None``: no bound).

    Returns:
        Task -> its latest scores; a task without such scores is absent.
    """
    stmt = (
        select(ScoreRow)
        .join(Run, Run.id == ScoreRow.run_id)
        .where(
            ScoreRow.patient_id == patient_id,
            ScoreRow.retracted_at.is_(None),
            Run.mode == "live",
        )
        .order_by(ScoreRow.as_of.desc(), ScoreRow.id.desc())
    )
    if since is not None:
        stmt = stmt.where(ScoreRow.as_of >= as_utc(since))
    with engine.connect() as conn:
        rows = [stored_score(r) for r in conn.execute(stmt).mappings().all()]
    chosen: dict[str, tuple[datetime, str]] = {}
    found: dict[str, list[StoredScore]] = {}
    for row in rows:
        key = chosen.setdefault(row.task, (row.as_of, row.model_version))
        if (row.as_of, row.model_version) == key:
            found.setdefault(row.task, []).append(row)
    return {task: TaskScores(task, tuple(rows)) for task, rows in found.items()}
