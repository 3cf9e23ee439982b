"""lean identity keys and customer indexes

Identity keys lose ``customer_id`` (a key's golden id is its record's link), and on SQLite the table becomes
``WITHOUT ROWID`` (its primary key is the table). The ``customers`` indexes on primary email, primary phone and
updated_at go (nothing looked customers up through them: searches use ``LIKE '%...%'`` and lookups by email or
phone go through identity_keys), and the organization indexes of ``customers`` and ``source_links`` only hold
rows that have an organization. Measured on the local pipeline benchmark: the store's insert work per
customer record falls by about a third (bench/LOCAL_RESULTS.md).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 16:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cxbridge.store.schema import key_string

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY_COLUMNS = ("key", "source", "object_type", "source_id")


def _quote(name: str) -> str:
    return str(op.get_bind().dialect.identifier_preparer.quote(name))


def _key_table(name: str, pk_name: str) -> None:
    op.create_table(
        name,
        sa.Column("key", key_string(400, 190), nullable=False),
        sa.Column("source", key_string(255, 191), nullable=False),
        sa.Column("object_type", key_string(255, 191), nullable=False),
        sa.Column("source_id", key_string(255, 191), nullable=False),
        sa.PrimaryKeyConstraint(*_KEY_COLUMNS, name=pk_name),
        sqlite_with_rowid=False,
    )


def _sparse(name: str, table: str, column: str) -> None:
    where = sa.text(f"{column} IS NOT NULL")
    op.drop_index(name, table_name=table)
    op.create_index(name, table, [column], unique=False, sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    for name in ("ix_customers_primary_email", "ix_customers_primary_phone", "ix_customers_updated_at"):
        op.drop_index(name, table_name="customers")
    _sparse("ix_customers_organization_id", "customers", "organization_id")
    _sparse("ix_source_links_organization_id", "source_links", "organization_id")
    if op.get_bind().dialect.name == "sqlite":
        # a rowid table cannot become WITHOUT ROWID in place: copy into a new table (SQLite constraint names
        # are per table, so the new one keeps the name pk_identity_keys)
        _key_table("identity_keys_v2", "pk_identity_keys")
        cols = ", ".join(_quote(c) for c in _KEY_COLUMNS)
        op.execute(f"INSERT INTO identity_keys_v2 ({cols}) SELECT {cols} FROM identity_keys")
        op.drop_table("identity_keys")
        op.rename_table("identity_keys_v2", "identity_keys")
    else:
        op.drop_index("ix_identity_keys_customer_id", table_name="identity_keys")
        op.drop_column("identity_keys", "customer_id")


def downgrade() -> None:
    # customer ids of keys come back from their records' links
    if op.get_bind().dialect.name == "sqlite":
        op.create_table(
            "identity_keys_v1",
            sa.Column("key", key_string(400, 190), nullable=False),
            sa.Column("source", key_string(255, 191), nullable=False),
            sa.Column("object_type", key_string(255, 191), nullable=False),
            sa.Column("source_id", key_string(255, 191), nullable=False),
            sa.Column("customer_id", key_string(64), nullable=False),
            sa.PrimaryKeyConstraint(*_KEY_COLUMNS, name="pk_identity_keys"),
        )
        target = "identity_keys_v1"
    else:
        op.add_column("identity_keys", sa.Column("customer_id", key_string(64), nullable=True))
        target = None
    link = (
        "SELECT customer_id FROM source_links l WHERE l.source = k.source AND l.object_type = k.object_type"
        " AND l.source_id = k.source_id"
    )
    if target:
        cols = ", ".join(_quote(c) for c in _KEY_COLUMNS)
        k_cols = ", ".join("k." + _quote(c) for c in _KEY_COLUMNS)
        op.execute(
            f"INSERT INTO {target} ({cols}, customer_id) SELECT {k_cols}, ({link})"
            f" FROM identity_keys k WHERE ({link}) IS NOT NULL"
        )
        op.drop_table("identity_keys")
        op.rename_table(target, "identity_keys")
    else:
        op.execute(f"UPDATE identity_keys k SET customer_id = ({link})")
        op.execute("DELETE FROM identity_keys WHERE customer_id IS NULL")
        op.alter_column("identity_keys", "customer_id", existing_type=key_string(64), nullable=False)
    op.create_index("ix_identity_keys_customer_id", "identity_keys", ["customer_id"], unique=False)
    for name in ("ix_source_links_organization_id", "ix_customers_organization_id"):
        table = "source_links" if name.startswith("ix_source_links") else "customers"
        op.drop_index(name, table_name=table)
        op.create_index(name, table, ["organization_id"], unique=False)
    op.create_index("ix_customers_updated_at", "customers", ["updated_at"], unique=False)
    op.create_index("ix_customers_primary_phone", "customers", ["primary_phone"], unique=False)
    op.create_index("ix_customers_primary_email", "customers", ["primary_email"], unique=False)
