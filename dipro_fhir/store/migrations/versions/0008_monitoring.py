"""monitoring: input profiles, outcomes of scored stays, monitored nights (issue 25)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def _night_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["night_id"],
        ["monitor_nights.id"],
        name=op.f(f"fk_{table}_night_id_monitor_nights"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "input_profiles",
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_input_profiles_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_input_profiles")),
    )
    op.create_table(
        "outcomes",
        sa.Column("score_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("died", sa.Boolean(), nullable=True),
        sa.Column("los_days", sa.Float(), nullable=True),
        sa.Column("los_bin", sa.Integer(), nullable=True),
        sa.Column("progression", sa.JSON(), nullable=True),
        sa.Column("lead_time_h", sa.Float(), nullable=True),
        sa.Column("sex", sa.String(length=64), nullable=False),
        sa.Column("age_band", sa.String(length=64), nullable=False),
        sa.Column("race_ethnicity", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=False),
        sa.Column("checked_at", _TZ, nullable=False),
        sa.Column("known_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["score_id"],
            ["scores.id"],
            name=op.f("fk_outcomes_score_id_scores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("score_id", name=op.f("pk_outcomes")),
    )
    op.create_table(
        "monitor_nights",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("as_of", _TZ, nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("reference", sa.JSON(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_nights")),
        sa.UniqueConstraint(
            "as_of", "model_version", name=op.f("uq_monitor_nights_as_of_model_version")
        ),
    )
    op.create_table(
        "monitor_figures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("night_id", sa.String(length=64), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("attribute", sa.String(length=64), nullable=False),
        sa.Column("group_name", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("low", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        _night_fk("monitor_figures"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_figures")),
        sa.UniqueConstraint(
            "night_id",
            "window_days",
            "attribute",
            "group_name",
            "metric",
            name=op.f("uq_monitor_figures_key"),
        ),
    )
    op.create_table(
        "monitor_drift",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("night_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("item", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("reference", sa.Float(), nullable=True),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        _night_fk("monitor_drift"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_drift")),
        sa.UniqueConstraint(
            "night_id", "kind", "item", name=op.f("uq_monitor_drift_night_id_kind_item")
        ),
    )
    op.create_table(
        "monitor_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("night_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("window", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        _night_fk("monitor_alerts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_alerts")),
        sa.UniqueConstraint(
            "night_id",
            "kind",
            "metric",
            "window",
            "subject",
            name=op.f("uq_monitor_alerts_key"),
        ),
    )


def downgrade() -> None:
    for table in (
        "monitor_alerts",
        "monitor_drift",
        "monitor_figures",
        "monitor_nights",
        "outcomes",
        "input_profiles",
    ):
        op.drop_table(table)
