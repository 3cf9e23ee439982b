"""pending CRM erasures

``erasure_pending``: the records a CRM could not erase when a person was forgotten, kept (CRM ids only) until
``cxbridge erasures retry`` gets the CRM's confirmation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cxbridge.store.schema import UTCDateTime, key_string

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_pending",
        sa.Column("source", key_string(255, 191), nullable=False),
        sa.Column("object_type", key_string(255, 191), nullable=False),
        sa.Column("source_id", key_string(255, 191), nullable=False),
        sa.Column("customer_id", key_string(64), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("source", "object_type", "source_id", name="pk_erasure_pending"),
    )


def downgrade() -> None:
    op.drop_table("erasure_pending")
