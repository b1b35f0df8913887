"""Predictions and labels waiting for each other (the delayed-label join).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_predictions",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(255), primary_key=True),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("window_start_ms", sa.BigInteger, nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("predicted", sa.String(255)),
    )
    op.create_index("ix_pending_predictions_ts_ms", "pending_predictions", ["ts_ms"])
    op.create_table(
        "pending_labels",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(255), primary_key=True),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_pending_labels_ts_ms", "pending_labels", ["ts_ms"])


def downgrade() -> None:
    op.drop_table("pending_labels")
    op.drop_table("pending_predictions")
