"""Shadow evaluation: comparison summaries, progress offsets, candidates and decisions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_windows",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("candidate", sa.String(200), primary_key=True),
        sa.Column("window_size_ms", sa.BigInteger, primary_key=True),
        sa.Column("window_start_ms", sa.BigInteger, primary_key=True),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("stats", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "shadow_offsets",
        sa.Column("group_id", sa.String(200), primary_key=True),
        sa.Column("topic", sa.String(400), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "shadow_candidates",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("candidate", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("info", sa.Text, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "shadow_decisions",
        sa.Column("policy", sa.String(200), primary_key=True),
        sa.Column("candidate", sa.String(200), primary_key=True),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("table", sa.Text, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for name in ("shadow_decisions", "shadow_candidates", "shadow_offsets", "shadow_windows"):
        op.drop_table(name)
