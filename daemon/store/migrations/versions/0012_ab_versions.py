"""A/B: when each version of a model was first seen, durably (untouched by retention), so
``compare: latest`` ranks versions the same way after their first windows are deleted;
and which pair of a policy is in force, kept with the comparison instead of in memory, so
a restart or a failover neither resolves its incidents nor swaps the pair.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ab_versions",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(200), primary_key=True),
        sa.Column("first_seen_ms", sa.BigInteger, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("ab_comparisons") as batch:
        batch.add_column(
            sa.Column("in_force", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("ab_comparisons") as batch:
        batch.drop_column("in_force")
    op.drop_table("ab_versions")
