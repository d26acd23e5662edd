"""run mode: live runs write RiskAssessments, shadow runs write the results database only

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "runs", sa.Column("mode", sa.String(length=16), nullable=False, server_default="live")
    )


def downgrade() -> None:
    op.drop_column("runs", "mode")
