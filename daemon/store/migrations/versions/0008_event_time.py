"""Event time per partition: watermarks and consumer status per partition, join counts,
the wall-clock age of waiting joins, and each policy's last evaluated tick.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the per-(model, role) watermark was the max over partitions — the bug this replaces;
    # dropping it makes the first commits after the upgrade lenient with late events only
    op.drop_table("watermarks")
    op.create_table(
        "partition_watermarks",
        sa.Column("group_id", sa.String(255), primary_key=True),
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("event_ms", sa.BigInteger, nullable=False),
        sa.Column("seen_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "partition_status",
        sa.Column("group_id", sa.String(255), primary_key=True),
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("position", sa.BigInteger),
        sa.Column("end_offset", sa.BigInteger),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "join_counts",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("joined", sa.BigInteger, nullable=False),
        sa.Column("expired_predictions", sa.BigInteger, nullable=False),
        sa.Column("expired_labels", sa.BigInteger, nullable=False),
    )
    # rows waiting at the upgrade start their wall-clock wait now
    now = sa.text(str(int(time.time() * 1000)))
    for table in ("pending_predictions", "pending_labels"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("created_ms", sa.BigInteger, nullable=False, server_default=now)
            )
    with op.batch_alter_table("policy_states") as batch:
        batch.add_column(sa.Column("tick_ms", sa.BigInteger))
    # evaluations are now kept per policy, behind its own last tick
    op.create_index("ix_evaluations_policy_at_ms", "evaluations", ["policy", "at_ms"])


def downgrade() -> None:
    op.drop_index("ix_evaluations_policy_at_ms", "evaluations")
    with op.batch_alter_table("policy_states") as batch:
        batch.drop_column("tick_ms")
    for table in ("pending_labels", "pending_predictions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("created_ms")
    for name in ("join_counts", "partition_status", "partition_watermarks"):
        op.drop_table(name)
    op.create_table(
        "watermarks",
        sa.Column("group_id", sa.String(255), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(20), primary_key=True),
        sa.Column("watermark_ms", sa.BigInteger, nullable=False),
    )
