"""Opening a store: engine creation, per-backend connection setup and transactions.

SQLite (the embedded default) gets WAL mode, foreign keys, a busy timeout and proper transactions: pysqlite's
own implicit transaction handling is switched off and SQLAlchemy emits ``BEGIN`` itself, so savepoints and
transactional DDL work (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional DDL" for
pysqlite). :meth:`Store.begin` starts ``BEGIN IMMEDIATE`` on SQLite: a writer takes the write lock up front, so
two writers wait for each other (busy timeout) instead of failing with ``SQLITE_BUSY`` when a read
transaction is upgraded to a write. PostgreSQL and MySQL use their defaults (READ COMMITTED / REPEATABLE READ).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from ..errors import StoreError

__all__ = ["Store", "open_store", "redact_url"]

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
_IMMEDIATE = "cxbridge_immediate"


def redact_url(url: str | URL) -> str:
    """The URL with its password masked, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show nothing that could be a secret
        return "<unparsable store url>"


class Store:
    """An opened store: an engine plus transaction helpers.

    Use :meth:`begin` for work that writes (one transaction, committed on success, rolled back on error) and
    :meth:`connect` for reads. A store is safe to share between threads; each call checks out its own
    connection.

    :param engine: the SQLAlchemy engine.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def url(self) -> str:
        """The store URL with the password masked."""
        return redact_url(self.engine.url)

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql``."""
        return str(self.engine.dialect.name)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in one write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads (SQLAlchemy 2 autobegins; nothing is committed unless you call commit)."""
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        """Dispose of the engine's connection pool."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


def _set_wal(cur: Any) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds the lock.

    Switching a database to WAL needs an exclusive lock, and SQLite answers ``database is locked`` at once
    instead of calling the busy handler when another connection holds one -- which happens when several
    processes open a fresh store together (seen as ~1 in 10 failures of four concurrent first opens).
    """
    import sqlite3

    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

    for attempt in Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, sqlite3.OperationalError) and "locked" in str(e)),
        wait=wait_random_exponential(multiplier=0.005, max=0.25),
        stop=stop_after_delay(SQLITE_BUSY_TIMEOUT_MS / 1000),
        reraise=True,
    ):
        with attempt:
            cur.execute("PRAGMA journal_mode = WAL")


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see module docs).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys = ON")
            if engine.url.database not in (None, "", ":memory:"):
                _set_wal(cur)
                cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_path(url: URL, base_dir: Path | None) -> URL:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    path = Path(database).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return url.set(database=str(path))


def create_store_engine(url: str | URL, *, base_dir: Path | None = None, **engine_kwargs: Any) -> Engine:
    """Create the engine for ``url`` with cxbridge's per-backend settings (see the module docs).

    :param base_dir: relative SQLite paths are resolved against it (the workspace folder).
    :param engine_kwargs: passed to :func:`sqlalchemy.create_engine` (``connect_args`` are merged).
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StoreError(f"invalid store url {redact_url(url)!r}: {exc}") from None
    backend = parsed.get_backend_name()
    from .jsoncodec import dumps, loads

    engine_kwargs.setdefault("json_serializer", dumps)
    engine_kwargs.setdefault("json_deserializer", loads)
    connect_args: dict[str, Any] = dict(engine_kwargs.pop("connect_args", {}) or {})
    if backend == "sqlite":
        parsed = _sqlite_path(parsed, base_dir)
        connect_args.setdefault("check_same_thread", False)
        if parsed.database in (None, "", ":memory:"):
            # One shared in-memory database for every connection of this engine.
            engine_kwargs.setdefault("poolclass", StaticPool)
    elif backend == "postgresql":
        engine_kwargs.setdefault("pool_pre_ping", True)
    elif backend in ("mysql", "mariadb"):
        engine_kwargs.setdefault("pool_pre_ping", True)
        engine_kwargs.setdefault("pool_recycle", 3600)
    else:
        raise StoreError(
            f"unsupported store backend {backend!r} in {redact_url(parsed)!r}; use sqlite, postgresql or mysql"
        )
    try:
        engine = create_engine(parsed, connect_args=connect_args, **engine_kwargs)
    except Exception as exc:
        raise StoreError(f"cannot open store {redact_url(parsed)!r}: {exc}") from None
    if backend == "sqlite":
        _setup_sqlite(engine)
    return engine


def open_store(
    url: str | URL,
    *,
    migrate: bool = True,
    base_dir: Path | None = None,
    **engine_kwargs: Any,
) -> Store:
    """Open (and by default migrate) the store at ``url``.

    :param url: a SQLAlchemy URL: ``sqlite:///cxbridge.db``, ``postgresql+psycopg://user@host/db``,
        ``mysql+pymysql://user@host/db``. PostgreSQL options such as a schema go in the query string:
        ``?options=-csearch_path%3Dmyschema``.
    :param migrate: apply pending migrations (under a cross-process lock) before returning.
    :param base_dir: folder that relative SQLite paths are relative to (the workspace).
    :raises StoreError: the URL is invalid, the database unreachable or the migration failed.
    """
    from .migrate import upgrade

    engine = create_store_engine(url, base_dir=base_dir, **engine_kwargs)
    store = Store(engine)
    if migrate:
        try:
            upgrade(store)
        except StoreError:
            store.close()
            raise
        except Exception as exc:
            store.close()
            raise StoreError(f"cannot migrate store {store.url!r}: {type(exc).__name__}: {exc}") from exc
    return store
