"""feature cache: CXR region features shared by all workers, evicted by last use

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
# The data-quality migration's revision id is "0002" (its file is 0002_data_quality.py).
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feature_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("instance_uid", sa.String(length=64), nullable=False),
        sa.Column("frame", sa.Integer(), nullable=False),
        sa.Column("preprocessing", sa.String(length=250), nullable=False),
        sa.Column("weights_digest", sa.String(length=64), nullable=False),
        sa.Column("nbytes", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_feature_cache")),
    )
    op.create_index(
        op.f("ix_feature_cache_last_used_at"), "feature_cache", ["last_used_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_feature_cache_last_used_at"), table_name="feature_cache")
    op.drop_table("feature_cache")
