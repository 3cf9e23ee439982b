"""Store fixtures for tests: a SQLite store, a PostgreSQL store and a ``store`` fixture over both.

- ``sqlite_store``: a migrated store in a file under ``tmp_path``.
- ``postgres_store``: a migrated store in a fresh PostgreSQL schema (``search_path``), dropped afterwards.
  The server is ``$CXBRIDGE_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``);
  when it is unreachable the test is skipped with the reason.
- ``store``: parametrized over ``sqlite`` and ``postgres`` -- use it for every test that touches the store.
- ``store_factory``: ``(backend) -> Store`` for tests that need several stores or a store URL to hand to a
  subprocess (``store.engine.url.render_as_string(hide_password=False)``).

Registered by the ``cxbridge.testing`` pytest plugin; elsewhere use
``pytest_plugins = ["cxbridge.testing.stores"]``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import pytest

from cxbridge.store import Store, open_store

__all__ = [
    "POSTGRES_URL",
    "postgres_available",
    "postgres_store",
    "sqlite_store",
    "store",
    "store_factory",
]

POSTGRES_URL = os.environ.get("CXBRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@lru_cache(maxsize=1)
def postgres_available() -> str | None:
    """None when PostgreSQL answers at :data:`POSTGRES_URL`, else the reason it does not."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # any driver / network error means "not available"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL not reachable at {POSTGRES_URL} ({first}); set CXBRIDGE_TEST_POSTGRES_URL"
    return None


def _schema_url(schema_name: str) -> str:
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema_name}')}"


class _Stores:
    """Creates stores for one test and cleans them up."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.opened: list[Store] = []
        self.schemas: list[str] = []

    def sqlite(self, name: str | None = None) -> Store:
        if name is None:  # every call a new database file
            count = sum(1 for s in self.opened if s.dialect == "sqlite")
            name = "cxbridge.db" if count == 0 else f"cxbridge{count + 1}.db"
        store = open_store(f"sqlite:///{self.tmp_path / name}")
        self.opened.append(store)
        return store

    def postgres(self, schema_name: str | None = None) -> Store:
        reason = postgres_available()
        if reason:
            print(f"SKIPPED (PostgreSQL): {reason}")
            pytest.skip(reason)
        from sqlalchemy import create_engine, text

        if schema_name is None:
            schema_name = f"cxt_{uuid.uuid4().hex[:16]}"
            admin = create_engine(POSTGRES_URL)
            try:
                with admin.begin() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
            finally:
                admin.dispose()
            self.schemas.append(schema_name)
        store = open_store(_schema_url(schema_name))
        self.opened.append(store)
        return store

    def __call__(self, backend: str) -> Store:
        if backend == "sqlite":
            return self.sqlite()
        if backend in ("postgres", "postgresql"):
            return self.postgres()
        raise ValueError(f"unknown store backend {backend!r}; use 'sqlite' or 'postgres'")

    def cleanup(self) -> None:
        for store in self.opened:
            store.close()
        if self.schemas:
            from sqlalchemy import create_engine, text

            admin = create_engine(POSTGRES_URL)
            try:
                with admin.begin() as conn:
                    for name in self.schemas:
                        conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
            finally:
                admin.dispose()


@pytest.fixture
def store_factory(tmp_path: Path) -> Iterator[Callable[[str], Store]]:
    """``(backend) -> Store`` ("sqlite" or "postgres"); every store made is closed (and dropped) afterwards."""
    stores = _Stores(tmp_path)
    try:
        yield stores
    finally:
        stores.cleanup()


@pytest.fixture
def sqlite_store(store_factory: _Stores) -> Store:
    """A migrated SQLite store in a temporary file."""
    return store_factory.sqlite()


@pytest.fixture
def postgres_store(store_factory: _Stores) -> Store:
    """A migrated PostgreSQL store in a fresh schema (skipped with the reason when PostgreSQL is absent)."""
    return store_factory.postgres()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, store_factory: _Stores) -> Store:
    """A migrated store, once per backend (SQLite, PostgreSQL)."""
    return store_factory(request.param)
