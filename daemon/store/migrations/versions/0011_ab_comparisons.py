"""Live A/B comparisons between model versions: per policy and (baseline, candidate)
pair, the experiment's start and its running state (folded roll-up of settled windows,
narrowed always-valid intervals, the latest look), so a restart neither restarts the
experiment nor lets a decision flip back.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ab_comparisons",
        sa.Column("policy", sa.String(200), primary_key=True),
        sa.Column("baseline", sa.String(200), primary_key=True),
        sa.Column("candidate", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("since_ms", sa.BigInteger, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("last", sa.Text, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ab_comparisons")
