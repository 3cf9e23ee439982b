"""Test helpers for the local-sql adapter: a normalized on-prem CRM schema on SQLite, PostgreSQL or MariaDB.

Every :class:`CrmDb` lives in its own SQLite file, PostgreSQL schema or MariaDB database (unique name), so
tests running concurrently on the shared servers never see each other's tables.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cxbridge_local.config import LocalSqlConfig
from cxbridge_local.sql import LocalSqlAdapter
from sqlalchemy.dialects import mysql

from cxbridge.testing.contract import make_test_context

PG_URL = os.environ.get("CXBRIDGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MY_URL = os.environ.get("CXBRIDGE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
BACKENDS = ("sqlite", "postgresql", "mariadb")

# DATETIME(6): MariaDB's DATETIME keeps whole seconds only, which would merge distinct modstamps
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


@functools.cache
def _unreachable(backend: str) -> str | None:
    if backend == "sqlite":
        return None
    url = PG_URL if backend == "postgresql" else MY_URL
    args = {"connect_timeout": 2}
    try:
        engine = sa.create_engine(url, connect_args=args)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        where = sa.engine.make_url(url).render_as_string(hide_password=True)
        return f"{backend} not reachable at {where}: {type(exc).__name__}"
    return None


def require(backend: str) -> None:
    """Skip (with the reason printed in the summary) when the backend's server is absent."""
    reason = _unreachable(backend)
    if reason:
        pytest.skip(reason)


class Clock:
    """Monotonic fake clock: every tick is 1.25 s later (fractions exercise microsecond round trips)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2024, 1, 1, 8, 0, tzinfo=UTC)

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1, microseconds=250_000)
        return self.now


def naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


class CrmDb:
    """A fresh normalized CRM database: party, contact_mechanism, address, orders, crm_task."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        require(backend)
        self.backend = backend
        self.name = f"cxl_{uuid.uuid4().hex[:12]}"
        self.schema: str | None = None
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'crm.db'}"
        elif backend == "postgresql":
            self.url = PG_URL
            self.schema = self.name
            self._admin(f"CREATE SCHEMA {self.name}")
        else:
            self._admin(f"CREATE DATABASE {self.name}")
            self.url = sa.engine.make_url(MY_URL).set(database=self.name).render_as_string(hide_password=False)
        self.engine = sa.create_engine(self.url)
        self.md = sa.MetaData(schema=self.schema)
        self.party = sa.Table(
            "party",
            self.md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("first_name", sa.String(80)),
            sa.Column("last_name", sa.String(80)),
            sa.Column("erp_no", sa.String(40), unique=True),
            sa.Column("cx_tier", sa.String(40)),
            sa.Column("is_deleted", sa.Boolean, nullable=False, default=False),
            sa.Column("updated_at", TS, nullable=False),
            sa.Index(f"ix_{self.name}_party_upd", "updated_at", "id"),
        )
        self.cm = sa.Table(
            "contact_mechanism",
            self.md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("party_id", sa.Integer, sa.ForeignKey("party.id"), nullable=False, index=True),
            sa.Column("kind", sa.String(20), nullable=False),
            sa.Column("value", sa.String(200), nullable=False),
            sa.Column("is_primary", sa.Boolean, nullable=False, default=False),
            sa.Column("updated_at", TS, nullable=False),
        )
        self.address = sa.Table(
            "address",
            self.md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("party_id", sa.Integer, sa.ForeignKey("party.id"), nullable=False, index=True),
            sa.Column("kind", sa.String(20)),
            sa.Column("street", sa.String(200)),
            sa.Column("city", sa.String(100)),
            sa.Column("postal_code", sa.String(20)),
            sa.Column("country", sa.String(2)),
            sa.Column("updated_at", TS, nullable=False),
        )
        self.orders = sa.Table(
            "orders",
            self.md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("party_id", sa.Integer, sa.ForeignKey("party.id"), nullable=False),
            sa.Column("total", sa.Numeric(10, 2), nullable=False),
            sa.Column("currency", sa.String(3), nullable=False),
            sa.Column("ordered_at", TS, nullable=False),
            sa.Column("updated_at", TS, nullable=False),
        )
        self.task = sa.Table(
            "crm_task",
            self.md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("party_id", sa.Integer),
            sa.Column("title", sa.String(200), nullable=False),
            sa.Column("body", sa.Text),
            sa.Column("due_at", TS),
        )
        self.md.create_all(self.engine)
        self.clock = Clock()
        self._n = 0

    def _admin(self, sql: str) -> None:
        engine = sa.create_engine(PG_URL if self.backend == "postgresql" else MY_URL)
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
        engine.dispose()

    def close(self) -> None:
        self.engine.dispose()
        if self.backend == "postgresql":
            self._admin(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")
        elif self.backend == "mariadb":
            self._admin(f"DROP DATABASE IF EXISTS {self.name}")

    # ------------------------------------------------------------------------------------------------ data

    def add_parties(self, n: int, *, modstamp: datetime | None = None, emails: int = 1) -> list[str]:
        ids = []
        with self.engine.begin() as conn:
            for _ in range(n):
                self._n += 1
                stamp = naive(modstamp or self.clock.tick())
                pid = conn.execute(
                    sa.insert(self.party).values(
                        first_name=f"First{self._n}",
                        last_name=f"Last{self._n}",
                        erp_no=f"E{self._n:05d}",
                        is_deleted=False,
                        updated_at=stamp,
                    )
                ).inserted_primary_key[0]
                for e in range(emails):
                    conn.execute(
                        sa.insert(self.cm).values(
                            party_id=pid,
                            kind="email",
                            value=f"p{self._n}.{e}@example.com",
                            is_primary=e == 0,
                            updated_at=stamp,
                        )
                    )
                ids.append(str(pid))
        return ids

    def touch_parties(self, ids: Sequence[str], **values: Any) -> None:
        with self.engine.begin() as conn:
            for pid in ids:
                conn.execute(
                    sa.update(self.party)
                    .where(self.party.c.id == int(pid))
                    .values(updated_at=naive(self.clock.tick()), **values)
                )

    def row(self, table: sa.Table, pid: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(table).where(table.c.id == int(pid))).mappings().first()
        return dict(found) if found else {}

    def count(self, table: sa.Table, *where: Any) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()

    # ------------------------------------------------------------------------------------------------ config

    def config(self, *, page_size: int = 5, related_change: bool = False, **party: Any) -> dict[str, Any]:
        """The local-sql connection table for this database (as it would come out of cxbridge.toml)."""
        change = {"change_column": "updated_at"} if related_change else {}
        customers: dict[str, Any] = {
            "table": "party",
            "schema": self.schema,
            "entity": "customer",
            "id_column": "id",
            "change_column": "updated_at",
            "soft_delete_column": "is_deleted",
            "deleted_value": True,
            "related": {
                "emails": {
                    "table": "contact_mechanism",
                    "schema": self.schema,
                    "fk": "party_id",
                    "value": "value",
                    "where": {"kind": "email"},
                    "order_by": "is_primary",
                    "descending": True,
                    **change,
                },
                "phones": {
                    "table": "contact_mechanism",
                    "schema": self.schema,
                    "fk": "party_id",
                    "value": "value",
                    "where": {"kind": "phone"},
                    **change,
                },
                "addresses": {
                    "table": "address",
                    "schema": self.schema,
                    "fk": "party_id",
                    "columns": {
                        "kind": "kind",
                        "line1": "street",
                        "city": "city",
                        "postal_code": "postal_code",
                        "country": "country",
                    },
                    **change,
                },
            },
            "mapping": {
                "first_name": "first_name",
                "last_name": "last_name",
                "emails": "emails",
                "phones": "phones",
                "external_ids.erp_no": "erp_no",
                **{
                    f"addresses.0.{k}": f"addresses.0.{k}"
                    for k in ("kind", "line1", "city", "postal_code", "country")
                },
            },
        }
        customers.update(party)
        return {
            "url": self.url,
            "page_size": page_size,
            "objects": {
                "customers": customers,
                "orders": {
                    "table": "orders",
                    "schema": self.schema,
                    "entity": "interaction",
                    "change_column": "updated_at",
                    "customer_ref_column": "party_id",
                    "customer_object": "customers",
                    "reconcile_deletes": True,
                    "mapping": {
                        "amount": "total",
                        "currency": "currency",
                        "occurred_at": "ordered_at",
                        "type": "=purchase",
                        "channel": "=web",
                    },
                },
            },
            "create": {
                "task": {
                    "table": "crm_task",
                    "schema": self.schema,
                    "columns": {"subject": "title", "body": "body", "due_at": "due_at"},
                    "customer_ref_column": "party_id",
                }
            },
        }

    def adapter(self, config: dict[str, Any] | None = None, **kw: Any) -> LocalSqlAdapter:
        cfg = LocalSqlConfig.model_validate(config or self.config(**kw))
        return LocalSqlAdapter(cfg, make_test_context("crm", now=lambda: self.clock.tick()))
