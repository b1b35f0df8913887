"""Waiting predictions keep their segment labels (issue 17, segments' performance): a
JSON object per row, per segment feature the label of the prediction's value, so a label
that arrives later grades the pair into its segments too. Rows stored before keep null
and grade into their window only.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pending_predictions") as batch:
        batch.add_column(sa.Column("segments", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pending_predictions") as batch:
        batch.drop_column("segments")
