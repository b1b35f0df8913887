"""Initial schema: windows, consumer offsets, watermarks, feature kinds, quarantine.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "windows",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("model_version", sa.String(200), primary_key=True),
        sa.Column("window_size_ms", sa.BigInteger, primary_key=True),
        sa.Column("window_start_ms", sa.BigInteger, primary_key=True),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("late_events", sa.BigInteger, nullable=False),
        sa.Column("first_ts_ms", sa.BigInteger),
        sa.Column("last_ts_ms", sa.BigInteger),
        sa.Column("summary", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_windows_start", "windows", ["window_start_ms"])
    op.create_table(
        "consumer_offsets",
        sa.Column("group_id", sa.String(255), primary_key=True),
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "watermarks",
        sa.Column("group_id", sa.String(255), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("watermark_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "feature_kinds",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("feature", sa.String(500), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_quarantine_record"),
    )
    op.create_index("ix_quarantine_reason", "quarantine", ["reason"])


def downgrade() -> None:
    op.drop_table("quarantine")
    op.drop_table("feature_kinds")
    op.drop_table("watermarks")
    op.drop_table("consumer_offsets")
    op.drop_index("ix_windows_start", table_name="windows")
    op.drop_table("windows")
