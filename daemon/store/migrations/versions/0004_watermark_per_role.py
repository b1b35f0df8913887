"""Watermarks per (model, role): labels no longer close the windows of predictions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the old per-model watermark was the max over every role: dropping it only makes
    # the first commit after the upgrade a little more lenient with late events
    op.drop_table("watermarks")
    op.create_table(
        "watermarks",
        sa.Column("group_id", sa.String(255), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(20), primary_key=True),
        sa.Column("watermark_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("watermarks")
    op.create_table(
        "watermarks",
        sa.Column("group_id", sa.String(255), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("watermark_ms", sa.BigInteger, nullable=False),
    )
