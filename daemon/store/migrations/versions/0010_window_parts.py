"""Window parts: each flush appends what it summarised as rows of its own (deltas),
instead of reading, merging and rewriting the whole window row (with its sample) under
a lock. Reads merge a window's stored row with its parts; a commit folds a window's
parts into its row once they are many. Existing window rows are the windows' bases, so
they load unchanged.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "window_parts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("window_size_ms", sa.BigInteger, nullable=False),
        sa.Column("window_start_ms", sa.BigInteger, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("late_events", sa.BigInteger, nullable=False),
        sa.Column("first_ts_ms", sa.BigInteger),
        sa.Column("last_ts_ms", sa.BigInteger),
        sa.Column("summary", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "ix_window_parts_window",
        "window_parts",
        ["model", "model_version", "window_size_ms", "window_start_ms"],
    )


def downgrade() -> None:
    op.drop_index("ix_window_parts_window", table_name="window_parts")
    op.drop_table("window_parts")
