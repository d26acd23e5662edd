"""run state: heartbeats and attempts of a run, superseded failures, failure reason classes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("runs", sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))
    op.add_column(
        "patient_failures",
        sa.Column("reason_class", sa.String(length=16), nullable=False, server_default="data"),
    )
    op.add_column(
        "patient_failures",
        sa.Column("superseded", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("patient_failures", "superseded")
    op.drop_column("patient_failures", "reason_class")
    op.drop_column("runs", "attempts")
    op.drop_column("runs", "heartbeat_at")
