"""The results schema as SQLAlchemy 2 typed ORM models.

Tables: ``runs`` (one row per pipeline run), ``scores`` (one row per predicted outcome, natural
key ``(model_version, task, patient_id, as_of, outcome)``), ``patient_failures`` and
``data_problems`` (both keyed per run so re-recording a chunk is idempotent; a problem of no
patient that can be told has ``patient_id`` ``''``), ``data_quality`` (a run's data-quality
summary, counts only, keyed ``(run_id, kind, item)``), ``retractions`` (one row per
retraction of a model version's results; retracted scores carry ``retracted_at``),
``watermarks`` (the as-of time of the last successful run per pipeline and model),
``feature_cache`` (cached CXR region features shared by all workers,
:mod:`dipro_fhir.store.feature_cache`), and the monitor's tables (0008, issue 25):
``input_profiles`` (a run's inputs summarised, counts only), ``outcomes`` (the outcome of a
scored stay, keyed by its mortality score row: no patient id of its own), ``monitor_nights``,
``monitor_figures``, ``monitor_drift`` and ``monitor_alerts`` (a monitored night's results;
figures of groups and counts, never a patient).

The Alembic migrations in the repository's ``migrations/`` create exactly this schema; a test
compares the two (``alembic.autogenerate.compare_metadata``). Patient ids are stored as given:
the database is a clinical system (logs are not).

All timestamps are ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL. SQLite (embedded demo only)
stores them without an offset, so the store always writes UTC and reads naive values as UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Constraint names are fixed so migrations and the ORM agree across dialects.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 64
PATIENT_ID_LENGTH = 64  # FHIR R4 id datatype: [A-Za-z0-9\-\.]{1,64}
CODE_LENGTH = 64
RESOURCE_LENGTH = 200
RUN_ID_LENGTH = 250


class Base(DeclarativeBase):
    """Declarative base of the results schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    """One pipeline run (a night, or one backfill date)."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH), primary_key=True)
    dag_run_id: Mapped[str | None] = mapped_column(String(RUN_ID_LENGTH))
    pipeline: Mapped[str] = mapped_column(String(CODE_LENGTH))
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model_name: Mapped[str] = mapped_column(String(CODE_LENGTH))
    model_version: Mapped[str] = mapped_column(String(CODE_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Run state (0005): the last sign of life of a running attempt, and how many attempts.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="1")
    # Run mode (0006): ``live`` writes RiskAssessments; ``shadow`` only this database.
    mode: Mapped[str] = mapped_column(String(16), server_default="live")
    # Run kind (0007): ``nightly`` (moves the watermark, a data-quality baseline), ``manual``
    # or ``backfill`` (recorded apart).
    kind: Mapped[str] = mapped_column(String(16), server_default="nightly")


class ScoreRow(Base):
    """One predicted outcome; written once per natural key, whatever the number of runs."""

    __tablename__ = "scores"
    __table_args__ = (
        UniqueConstraint("model_version", "task", "patient_id", "as_of", "outcome"),
        Index(None, "patient_id"),
        Index(None, "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    patient_id: Mapped[str] = mapped_column(String(PATIENT_ID_LENGTH))
    encounter_id: Mapped[str | None] = mapped_column(String(PATIENT_ID_LENGTH))
    task: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(CODE_LENGTH))
    probability: Mapped[float] = mapped_column(Float)
    risk_level: Mapped[str | None] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(16))
    fhir_resource_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    model_name: Mapped[str] = mapped_column(String(CODE_LENGTH))
    model_version: Mapped[str] = mapped_column(String(CODE_LENGTH))
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set when the score was retracted (``dipro-fhir retract``); never cleared by a re-run.
    retracted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retraction_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))


class RetractionRow(Base):
    """A retraction of a model version's results (time range and patients optional).

    ``id`` is derived from what is retracted, so running the same retraction again (after a
    crash, or by mistake) finds its row; ``patients`` is ``None`` for every patient.
    """

    __tablename__ = "retractions"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(CODE_LENGTH))
    model_version: Mapped[str] = mapped_column(String(CODE_LENGTH))
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    patients: Mapped[list[str] | None] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PatientFailureRow(Base):
    """A patient a run could not finish, with the stage and a stable reason code."""

    __tablename__ = "patient_failures"
    __table_args__ = (UniqueConstraint("run_id", "patient_id", "stage", "reason"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    patient_id: Mapped[str] = mapped_column(String(PATIENT_ID_LENGTH))
    stage: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(CODE_LENGTH))
    detail: Mapped[str] = mapped_column(Text)
    retriable: Mapped[bool] = mapped_column(Boolean)
    # ``retriable``, ``data`` or ``internal`` (PatientFailure.reason_class).
    reason_class: Mapped[str] = mapped_column(String(16), server_default="data")
    # A later successful attempt of the run finished this patient; kept as history.
    superseded: Mapped[bool] = mapped_column(Boolean, server_default=false())


class DataProblemRow(Base):
    """A data problem met while mapping a patient (a ``MappingIssue``)."""

    __tablename__ = "data_problems"
    __table_args__ = (UniqueConstraint("run_id", "patient_id", "code", "resource", "detail"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    patient_id: Mapped[str] = mapped_column(String(PATIENT_ID_LENGTH))
    code: Mapped[str] = mapped_column(String(CODE_LENGTH))
    # '' rather than NULL when there is no resource: NULLs never collide in a unique key.
    resource: Mapped[str] = mapped_column(String(RESOURCE_LENGTH))
    detail: Mapped[str] = mapped_column(Text)


class DataQualityRow(Base):
    """One count of a run's data-quality summary (no patient data).

    ``kind`` is ``patients`` (item ``''``), ``unmapped-code`` (item ``system|code``, count =
    Observations, ``detail`` = a display), ``variable-coverage`` (item = variable, count =
    patients with a value, ``share`` = count / patients), ``image-problem``, ``image-flag``
    (a radiograph used with a flag) or ``unattributed-problem`` (item = issue code).
    """

    __tablename__ = "data_quality"
    __table_args__ = (UniqueConstraint("run_id", "kind", "item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    item: Mapped[str] = mapped_column(String(250))
    count: Mapped[int] = mapped_column(Integer)
    share: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text)


class Watermark(Base):
    """The as-of time of the last successful run, per pipeline and model."""

    __tablename__ = "watermarks"

    pipeline: Mapped[str] = mapped_column(String(CODE_LENGTH), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(CODE_LENGTH), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str] = mapped_column(String(RUN_ID_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeatureCacheRow(Base):
    """One cached CXR: pooled backbone features of its regions, boxes and QC verdict.

    ``key`` is the SHA-256 of every key part (instance, frame, preprocessing version, backbone
    weights digest), which are kept beside it for inspection and bulk invalidation.
    ``payload`` is NULL when the bytes live in an object store (``DIPRO_CACHE__BACKEND=fsspec``);
    ``checksum`` covers key and payload, so a corrupt or partial entry is never used.
    """

    __tablename__ = "feature_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance_uid: Mapped[str] = mapped_column(String(ID_LENGTH))
    frame: Mapped[int] = mapped_column(Integer)
    preprocessing: Mapped[str] = mapped_column(String(250))
    weights_digest: Mapped[str] = mapped_column(String(64))
    nbytes: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


# --- Monitoring (0008, issue 25): what the monitor gathers and finds, no patient ids -------


class InputProfileRow(Base):
    """A run's inputs summarised (:class:`~dipro_fhir.mapping.profile.InputProfile` JSON:
    counts per variable, histogram bin and film problem; no patient data)."""

    __tablename__ = "input_profiles"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)


class OutcomeRow(Base):
    """The outcome of the stay a mortality score was about, once known.

    Keyed by the score row (``scores.id``): the patient is the score's, so this table holds
    no identifier of its own, and no date (``lead_time_h`` is a duration). ``status`` is
    ``pending`` (the stay goes on), ``known`` or ``missing`` (the stay is no longer in
    FHIR). Groups (``sex``, ``age_band``, ``race_ethnicity``, ``unit``) are coarse labels.
    ``open_days`` (pending stays): days from the stay's start to ``checked_at``, a duration.
    """

    __tablename__ = "outcomes"

    score_id: Mapped[int] = mapped_column(
        ForeignKey("scores.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16))
    died: Mapped[bool | None] = mapped_column(Boolean)
    los_days: Mapped[float | None] = mapped_column(Float)
    los_bin: Mapped[int | None] = mapped_column(Integer)
    progression: Mapped[list[int] | None] = mapped_column(JSON)
    lead_time_h: Mapped[float | None] = mapped_column(Float)
    open_days: Mapped[float | None] = mapped_column(Float)
    sex: Mapped[str] = mapped_column(String(CODE_LENGTH))
    age_band: Mapped[str] = mapped_column(String(CODE_LENGTH))
    race_ethnicity: Mapped[str] = mapped_column(String(CODE_LENGTH))
    unit: Mapped[str] = mapped_column(String(CODE_LENGTH))
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    known_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MonitorNightRow(Base):
    """One monitored night of one model version: status, counts and the reference used."""

    __tablename__ = "monitor_nights"
    __table_args__ = (UniqueConstraint("as_of", "model_version"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model_name: Mapped[str] = mapped_column(String(CODE_LENGTH))
    model_version: Mapped[str] = mapped_column(String(CODE_LENGTH))
    run_id: Mapped[str | None] = mapped_column(String(RUN_ID_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    reference: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MonitorFigureRow(Base):
    """One figure of a night: window, group (``''`` = everyone), metric, value, interval."""

    __tablename__ = "monitor_figures"
    __table_args__ = (
        # Named by hand: the convention's name would pass PostgreSQL's 63 characters.
        UniqueConstraint(
            "night_id", "window_days", "attribute", "group_name", "metric",
            name="uq_monitor_figures_key",
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    night_id: Mapped[str] = mapped_column(ForeignKey("monitor_nights.id", ondelete="CASCADE"))
    window_days: Mapped[int] = mapped_column(Integer)
    attribute: Mapped[str] = mapped_column(String(CODE_LENGTH))
    group_name: Mapped[str] = mapped_column(String(CODE_LENGTH))
    metric: Mapped[str] = mapped_column(String(CODE_LENGTH))
    value: Mapped[float | None] = mapped_column(Float)
    low: Mapped[float | None] = mapped_column(Float)
    high: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)


class MonitorDriftRow(Base):
    """One drift comparison of a night with the reference (a variable, a share, the scores)."""

    __tablename__ = "monitor_drift"
    __table_args__ = (UniqueConstraint("night_id", "kind", "item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    night_id: Mapped[str] = mapped_column(ForeignKey("monitor_nights.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    item: Mapped[str] = mapped_column(String(250))
    value: Mapped[float | None] = mapped_column(Float)
    reference: Mapped[float | None] = mapped_column(Float)
    statistic: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(Boolean)


class MonitorAlertRow(Base):
    """A threshold a night breached: metric, window, group or item, value and threshold."""

    __tablename__ = "monitor_alerts"
    __table_args__ = (
        UniqueConstraint(
            "night_id", "kind", "metric", "window", "subject", name="uq_monitor_alerts_key"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    night_id: Mapped[str] = mapped_column(ForeignKey("monitor_nights.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(CODE_LENGTH))
    window: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(250))
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
