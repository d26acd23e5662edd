"""What the DiPro page reads from the results database: read-only, counts where it lists.

The night list (:func:`night_page`) and a night's page hold counts only; patient ids leave
this module only in :func:`latest_assessments`, which is asked for one patient by id.
A night's scores are those of its as-of time and model version (a re-run of a night writes
nothing new: its scores keep the run that first wrote them, as in the run report), retracted
scores left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from dipro_fhir.core.timeline import NO_PATIENT, PatientId, RunId
from dipro_fhir.mapping.quality import DataQuality
from dipro_fhir.store.models import DataProblemRow, PatientFailureRow, Run, ScoreRow
from dipro_fhir.store.quality import previous_success, read_data_quality
from dipro_fhir.store.results import ResultStore, RunRecord, StoredScore, as_utc, stored_score

PIPELINE = "dipro_nightly"
#: The order the pages show tasks in.
TASK_ORDER = ("mortality", "los", "progression")


@dataclass(frozen=True, slots=True)
class QualityFigures:
    """A night's data quality in three numbers (docs/ui.md says what each means).

    Attributes:
        patients: Patients mapped.
        coverage: Mean over the model's variables of the share of patients with a value;
            ``None`` when no patient was mapped.
        unmapped_observations: Observations whose code no code map knows.
        films_left_out: Radiographs or studies that gave no usable image.
    """

    patients: int
    coverage: float | None
    unmapped_observations: int
    films_left_out: int

    @classmethod
    def of(cls, quality: DataQuality) -> QualityFigures:
        shares = list(quality.coverage().values())
        return cls(
            patients=quality.patients,
            coverage=sum(shares) / len(shares) if quality.patients and shares else None,
            unmapped_observations=quality.unmapped_observations,
            films_left_out=sum(quality.image_problems.values()),
        )


@dataclass(frozen=True, slots=True)
class Night:
    """One run with its data quality and that of its baseline (the latest successful
    nightly run before it, :func:`~dipro_fhir.store.quality.previous_success`)."""

    run: RunRecord
    quality: DataQuality | None
    baseline_run: RunId | None
    baseline: DataQuality | None

    @property
    def figures(self) -> QualityFigures | None:
        return None if self.quality is None else QualityFigures.of(self.quality)

    @property
    def baseline_figures(self) -> QualityFigures | None:
        return None if self.baseline is None else QualityFigures.of(self.baseline)


@dataclass(frozen=True, slots=True)
class NightPage:
    """One page of the night list, newest as-of time first."""

    nights: tuple[Night, ...]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Patients of a night that failed with one reason (``patients`` excludes problems of no
    patient, counted in ``unattributed``; ``superseded``: fixed by a later attempt)."""

    reason_class: str
    stage: str
    reason: str
    patients: int
    unattributed: int
    superseded: int


@dataclass(frozen=True, slots=True)
class NightScores:
    """A night's scores (not retracted) and how many retracted ones were left out."""

    scores: tuple[StoredScore, ...]
    retracted: int


def night(store: ResultStore, run: RunRecord) -> Night:
    """``run`` with its data quality and its baseline's."""
    engine = store.engine
    baseline_run = previous_success(
        engine, pipeline=run.pipeline, model_name=run.model_name, before=run.as_of
    )
    baseline = None if baseline_run is None else read_data_quality(engine, baseline_run)
    return Night(run, read_data_quality(engine, run.id), baseline_run, baseline)


def night_page(
    store: ResultStore, *, page: int = 1, per_page: int = 20, pipeline: str | None = None
) -> NightPage:
    """The runs, newest as-of time first (then the latest started), ``per_page`` a page."""
    page, per_page = max(page, 1), max(per_page, 1)
    filters = [] if pipeline is None else [Run.pipeline == pipeline]
    ids = (
        select(Run.id)
        .where(*filters)
        .order_by(Run.as_of.desc(), Run.started_at.desc(), Run.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    with store.engine.connect() as conn:
        total = int(
            conn.execute(select(func.count()).select_from(Run).where(*filters)).scalar_one()
        )
        run_ids = [RunId(r) for r in conn.execute(ids).scalars()]
    runs = [r for r in (store.run(i) for i in run_ids) if r is not None]
    return NightPage(tuple(night(store, r) for r in runs), total, page, per_page)


def run_for_dag_run(store: ResultStore, dag_run_id: str, pipeline: str) -> RunRecord | None:
    """The run an Airflow DAG run recorded (the latest started, if several), or ``None``."""
    stmt = (
        select(Run.id)
        .where(Run.dag_run_id == dag_run_id, Run.pipeline == pipeline)
        .order_by(Run.started_at.desc())
        .limit(1)
    )
    with store.engine.connect() as conn:
        found = conn.execute(stmt).scalar_one_or_none()
    return None if found is None else store.run(RunId(found))


def night_scores(engine: Engine, run: RunRecord) -> NightScores:
    """The scores of ``run``'s as-of time and model version (module docstring)."""
    stmt = select(ScoreRow).where(
        ScoreRow.as_of == as_utc(run.as_of), ScoreRow.model_version == run.model_version
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt.order_by(ScoreRow.id)).mappings().all()
    kept = tuple(stored_score(r) for r in rows if r["retracted_at"] is None)
    return NightScores(kept, len(rows) - len(kept))


def failure_counts(engine: Engine, run_id: RunId) -> list[FailureCount]:
    """The run's failures by reason class, stage and reason (counts only), most first."""
    f = PatientFailureRow
    no_patient = f.patient_id == NO_PATIENT
    open_ = f.superseded.is_(False)
    stmt = (
        select(
            f.reason_class,
            f.stage,
            f.reason,
            func.count(func.distinct(f.patient_id)).filter(~no_patient, open_),
            func.count().filter(no_patient, open_),
            func.count().filter(f.superseded.is_(True)),
        )
        .where(f.run_id == run_id)
        .group_by(f.reason_class, f.stage, f.reason)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    counts = [
        FailureCount(str(c), str(s), str(r), int(p), int(u), int(x)) for c, s, r, p, u, x in rows
    ]
    return sorted(counts, key=lambda c: (-c.patients - c.unattributed, c.reason_class, c.reason))


@dataclass(frozen=True, slots=True)
class Assessment:
    """A patient's latest assessment of one task: every outcome's score at that as-of time,
    the run that wrote it, and the patient's data problems and failures in that run."""

    task: str
    scores: tuple[StoredScore, ...]
    run: RunRecord | None
    problems: tuple[tuple[str, int], ...]
    failures: tuple[str, ...]

    @property
    def as_of(self) -> datetime:
        return self.scores[0].as_of


def _latest(rows: Sequence[StoredScore]) -> tuple[StoredScore, ...]:
    """The rows of the newest as-of time (the newest model version of that time)."""
    newest = max((r.as_of, r.model_version) for r in rows)
    chosen = [r for r in rows if (r.as_of, r.model_version) == newest]
    return tuple(sorted(chosen, key=lambda r: -r.probability))


def latest_assessments(store: ResultStore, patient_id: PatientId) -> list[Assessment]:
    """The patient's latest scores per task (not retracted), in :data:`TASK_ORDER`."""
    stmt = select(ScoreRow).where(
        ScoreRow.patient_id == patient_id, ScoreRow.retracted_at.is_(None)
    )
    with store.engine.connect() as conn:
        rows = [stored_score(r) for r in conn.execute(stmt).mappings()]
    by_task: dict[str, list[StoredScore]] = {}
    for row in rows:
        by_task.setdefault(row.task, []).append(row)
    found = [_assessment(store, task, _latest(task_rows)) for task, task_rows in by_task.items()]
    order = {task: i for i, task in enumerate(TASK_ORDER)}
    return sorted(found, key=lambda a: (order.get(a.task, len(order)), a.task))


def _assessment(store: ResultStore, task: str, scores: tuple[StoredScore, ...]) -> Assessment:
    run_id, patient = scores[0].run_id, scores[0].patient_id
    problems = (
        select(DataProblemRow.code, func.count())
        .where(DataProblemRow.run_id == run_id, DataProblemRow.patient_id == patient)
        .group_by(DataProblemRow.code)
        .order_by(DataProblemRow.code)
    )
    failures = select(PatientFailureRow.reason).where(
        PatientFailureRow.run_id == run_id,
        PatientFailureRow.patient_id == patient,
        PatientFailureRow.superseded.is_(False),
    )
    with store.engine.connect() as conn:
        counted = tuple((str(c), int(n)) for c, n in conn.execute(problems))
        reasons = tuple(sorted({str(r) for r in conn.execute(failures).scalars()}))
    return Assessment(task, scores, store.run(run_id), counted, reasons)
