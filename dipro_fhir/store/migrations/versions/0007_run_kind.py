"""run kind: only nightly runs of the cohort move the watermark and set the baseline

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "runs",
        sa.Column("kind", sa.String(length=16), nullable=False, server_default="nightly"),
    )


def downgrade() -> None:
    op.drop_column("runs", "kind")
