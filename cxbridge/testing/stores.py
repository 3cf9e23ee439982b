"""Store fixtures for tests: SQLite, PostgreSQL and MySQL stores and a ``store`` fixture over SQLite + PostgreSQL.

- ``store``: parametrized over ``sqlite`` and ``postgres`` -- use it for every test that touches the store.
- ``sqlite_store``: a migrated store in a file under ``tmp_path`` (copied from a migrated template).
- ``postgres_store``: a migrated, empty PostgreSQL store. All tests of one session share one schema
  (``search_path``), emptied with TRUNCATE ... RESTART IDENTITY before each test and dropped at the end.
  The server is ``$CXBRIDGE_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``);
  when it is unreachable the test is skipped with the reason.
- ``mysql_store``: likewise on MySQL/MariaDB (``$CXBRIDGE_TEST_MYSQL_URL``, default
  ``mysql+pymysql://root@127.0.0.1:3306/test``; auto-increment ids are not reset there).
- ``store_factory``: ``(backend, fresh=True) -> Store`` (``"sqlite"``, ``"postgres"``, ``"mysql"``): a new
  migrated database on each call, for tests that need several stores, change the schema, or hand a URL to a
  subprocess (``store.engine.url.render_as_string(hide_password=False)``).

Don't alter the schema of a shared store (``store``, ``postgres_store``, ``mysql_store``); use
``store_factory`` for that.

Registered by the ``cxbridge.testing`` pytest plugin; elsewhere use
``pytest_plugins = ["cxbridge.testing.stores"]``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from cxbridge.store import Store, open_store

__all__ = [
    "MYSQL_URL",
    "POSTGRES_URL",
    "StoreFactory",
    "mysql_available",
    "mysql_store",
    "postgres_available",
    "postgres_store",
    "sqlite_store",
    "store",
    "store_factory",
]

POSTGRES_URL = os.environ.get("CXBRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("CXBRIDGE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


@lru_cache(maxsize=4)
def _server_unavailable(url: str, label: str, env: str) -> str | None:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # any driver / network error means "not available"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{label} not reachable at {url} ({first}); set {env}"
    return None


def postgres_available() -> str | None:
    """None when PostgreSQL answers at :data:`POSTGRES_URL`, else the reason it does not."""
    return _server_unavailable(POSTGRES_URL, "PostgreSQL", "CXBRIDGE_TEST_POSTGRES_URL")


def mysql_available() -> str | None:
    """None when MySQL/MariaDB answers at :data:`MYSQL_URL`, else the reason it does not."""
    return _server_unavailable(MYSQL_URL, "MySQL/MariaDB", "CXBRIDGE_TEST_MYSQL_URL")


def _schema_url(schema_name: str) -> str:
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema_name}')}"


class _Shared:
    """Session-wide migrated databases, so a test's store costs a file copy or a TRUNCATE, not a migration.

    - SQLite: a migrated template file, copied for every store;
    - PostgreSQL / MySQL: one migrated schema / database per test session, emptied before each test that
      uses ``store``, ``postgres_store`` or ``mysql_store`` (dropped at the end of the session).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sqlite: Path | None = None
        self._pg: str | None = None
        self._my: str | None = None

    def sqlite_template(self) -> Path:
        if self._sqlite is None:
            path = self.root / "template.db"
            open_store(f"sqlite:///{path}").close()
            with closing(sqlite3.connect(path)) as conn:  # fold the WAL into the file before copying it
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._sqlite = path
        return self._sqlite

    def postgres_schema(self) -> str:
        if self._pg is None:
            self._pg = _create_pg_schema()
            open_store(_schema_url(self._pg)).close()
        return self._pg

    def mysql_database(self) -> str:
        if self._my is None:
            self._my = _create_mysql_database()
            open_store(_mysql_url(self._my)).close()
        return self._my

    def cleanup(self) -> None:
        if self._pg is not None:
            _drop_pg_schemas([self._pg])
        if self._my is not None:
            _drop_mysql_databases([self._my])


def _admin(url: str, *statements: str) -> None:
    """Run ``statements`` in one transaction on the server at ``url`` (create / drop test schemas)."""
    from sqlalchemy import create_engine, text

    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        admin.dispose()


def _create_pg_schema() -> str:
    name = f"cxt_{uuid.uuid4().hex[:16]}"
    _admin(POSTGRES_URL, f'CREATE SCHEMA "{name}"')
    return name


def _drop_pg_schemas(names: list[str]) -> None:
    _admin(POSTGRES_URL, *(f'DROP SCHEMA IF EXISTS "{name}" CASCADE' for name in names))


def _create_mysql_database() -> str:
    name = f"cxt_{uuid.uuid4().hex[:16]}"
    _admin(MYSQL_URL, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    return name


def _drop_mysql_databases(names: list[str]) -> None:
    _admin(MYSQL_URL, *(f"DROP DATABASE IF EXISTS `{name}`" for name in names))


def _mysql_url(database: str) -> Any:
    from sqlalchemy import make_url

    return make_url(MYSQL_URL).set(database=database)


def _skip_unless(reason: str | None, label: str) -> None:
    if reason:
        print(f"SKIPPED ({label}): {reason}")
        pytest.skip(reason)


def _empty(store: Store) -> None:
    """Delete every row of every cxbridge table (the schema and alembic_version stay)."""
    from cxbridge.store import schema

    tables = [t.name for t in schema.metadata.sorted_tables]
    with store.begin() as conn:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
            conn.exec_driver_sql(f"TRUNCATE TABLE {', '.join(tables)} RESTART IDENTITY")
        else:
            for name in reversed(tables):
                conn.exec_driver_sql(f"DELETE FROM `{name}`")


class StoreFactory:
    """Creates migrated stores and cleans them up (:meth:`cleanup`); the ``store_factory`` fixture is one.

    Usable outside a test function too (module-scoped fixtures)::

        factory = StoreFactory(tmp_path_factory.mktemp("stores"))
        try:
            store = factory("postgres")
        finally:
            factory.cleanup()

    :param tmp_path: folder for SQLite files.
    :param shared: the session's shared databases (the fixtures pass it; default: private to this factory).
    """

    def __init__(self, tmp_path: Path, shared: _Shared | None = None) -> None:
        self.tmp_path = tmp_path
        self._own_shared = shared is None
        self.shared = shared if shared is not None else _Shared(tmp_path)
        self.opened: list[Store] = []
        self.schemas: list[str] = []
        self.databases: list[str] = []

    def _open(self, url: Any) -> Store:
        store = open_store(url)
        self.opened.append(store)
        return store

    def sqlite(self, name: str | None = None) -> Store:
        """A migrated SQLite store in a new file under ``tmp_path``."""
        if name is None:  # every call a new database file
            count = sum(1 for s in self.opened if s.dialect == "sqlite")
            name = "cxbridge.db" if count == 0 else f"cxbridge{count + 1}.db"
        target = self.tmp_path / name
        if not target.exists():
            shutil.copyfile(self.shared.sqlite_template(), target)
        return self._open(f"sqlite:///{target}")

    def postgres(self, *, fresh: bool = True) -> Store:
        """A migrated PostgreSQL store: a new schema (``fresh``) or the session's shared one, emptied."""
        _skip_unless(postgres_available(), "PostgreSQL")
        if not fresh:
            store = self._open(_schema_url(self.shared.postgres_schema()))
            _empty(store)
            return store
        name = _create_pg_schema()
        self.schemas.append(name)
        return self._open(_schema_url(name))

    def mysql(self, *, fresh: bool = True) -> Store:
        """A migrated MySQL/MariaDB store: a new database (``fresh``) or the session's shared one, emptied."""
        _skip_unless(mysql_available(), "MySQL")
        if not fresh:
            store = self._open(_mysql_url(self.shared.mysql_database()))
            _empty(store)
            return store
        name = _create_mysql_database()
        self.databases.append(name)
        return self._open(_mysql_url(name))

    def __call__(self, backend: str, *, fresh: bool = True) -> Store:
        if backend == "sqlite":
            return self.sqlite()
        if backend in ("postgres", "postgresql"):
            return self.postgres(fresh=fresh)
        if backend in ("mysql", "mariadb"):
            return self.mysql(fresh=fresh)
        raise ValueError(f"unknown store backend {backend!r}; use 'sqlite', 'postgres' or 'mysql'")

    def cleanup(self) -> None:
        for store in self.opened:
            store.close()
        if self.schemas:
            _drop_pg_schemas(self.schemas)
        if self.databases:
            _drop_mysql_databases(self.databases)
        if self._own_shared:
            self.shared.cleanup()


_Stores = StoreFactory  # earlier name, still used by some tests


@pytest.fixture(scope="session")
def _cxbridge_shared_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Shared]:
    shared = _Shared(tmp_path_factory.mktemp("cxbridge-stores"))
    try:
        yield shared
    finally:
        shared.cleanup()


@pytest.fixture
def store_factory(tmp_path: Path, _cxbridge_shared_stores: _Shared) -> Iterator[StoreFactory]:
    """``(backend) -> Store`` ("sqlite", "postgres", "mysql"): a new migrated database on every call (closed
    and dropped afterwards); ``fresh=False`` gives the session's shared one, emptied."""
    stores = StoreFactory(tmp_path, _cxbridge_shared_stores)
    try:
        yield stores
    finally:
        stores.cleanup()


@pytest.fixture
def sqlite_store(store_factory: StoreFactory) -> Store:
    """A migrated SQLite store in a temporary file."""
    return store_factory.sqlite()


@pytest.fixture
def postgres_store(store_factory: StoreFactory) -> Store:
    """A migrated, empty PostgreSQL store (skipped with the reason when PostgreSQL is absent)."""
    return store_factory.postgres(fresh=False)


@pytest.fixture
def mysql_store(store_factory: StoreFactory) -> Store:
    """A migrated, empty MySQL/MariaDB store (skipped with the reason when the server is absent)."""
    return store_factory.mysql(fresh=False)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, store_factory: StoreFactory) -> Store:
    """A migrated, empty store, once per backend (SQLite, PostgreSQL)."""
    return store_factory(request.param, fresh=False)
