"""Windows set aside: a stored window whose base row or a part is corrupt (a damaged or
hand-edited row) was skipped by every read, forever; housekeeping now moves its rows
here as they were stored (the corrupt one marked, the error as the reason), so reads
stop paying for it, and status shows it. Nothing here is deleted by watchkeeper.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "set_aside_windows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("window_size_ms", sa.BigInteger, nullable=False),
        sa.Column("window_start_ms", sa.BigInteger, nullable=False),
        sa.Column("part_id", sa.BigInteger),
        sa.Column("corrupt", sa.Boolean, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("late_events", sa.BigInteger, nullable=False),
        sa.Column("first_ts_ms", sa.BigInteger),
        sa.Column("last_ts_ms", sa.BigInteger),
        sa.Column("summary", sa.LargeBinary, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("set_aside_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_set_aside_windows_model", "set_aside_windows", ["model"])


def downgrade() -> None:
    op.drop_index("ix_set_aside_windows_model", table_name="set_aside_windows")
    op.drop_table("set_aside_windows")
