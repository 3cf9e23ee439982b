"""Alembic migrations, run programmatically (no ``alembic.ini`` needed; works from an installed package).

:func:`upgrade` brings a store to the newest revision under a cross-process lock, so several processes
opening a fresh store at once do not race:

- PostgreSQL: ``pg_advisory_xact_lock`` keyed by the current schema, held by the migrating transaction
  (PostgreSQL has transactional DDL, so the version check and the DDL are atomic);
- SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock before the version is read;
- MySQL / MariaDB: ``GET_LOCK`` named after the database (DDL commits implicitly there).

The version is checked first without a lock, so opening an up-to-date store costs one query.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from ..errors import StoreError
from .engine import _IMMEDIATE, Store

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MYSQL_LOCK_TIMEOUT_S = 300
_PG_LOCK = "SELECT pg_advisory_xact_lock(hashtext('cxbridge-migrate:' || current_schema()))"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at cxbridge's migrations; ``connection`` is used by ``env.py`` when given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration revision shipped with this version of cxbridge."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - packaging error
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _known_revision(revision: str) -> bool:
    script = ScriptDirectory.from_config(alembic_config())
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises ResolutionError / CommandError subclasses for unknown ids
        return False


def current_revision(store: Store) -> str | None:
    """The revision the store is at (None for an empty database)."""
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(store: Store, revision: str = "head") -> bool:
    """Apply pending migrations up to ``revision``.

    :returns: whether anything was applied.
    """
    current = current_revision(store)
    if revision == "head" and current == head_revision():
        return False
    if current is not None and not _known_revision(current):
        raise StoreError(
            f"store {store.url} is at schema revision {current!r}, which this cxbridge does not know: it was "
            "migrated by a newer cxbridge version; upgrade cxbridge (pip install -U cxbridge)"
        )
    dialect = store.dialect
    with store.engine.connect() as conn:
        conn.execution_options(**{_IMMEDIATE: True})
        if dialect in ("mysql", "mariadb"):
            got = conn.execute(
                text("SELECT GET_LOCK(CONCAT('cxbridge-migrate:', DATABASE()), :t)"), {"t": MYSQL_LOCK_TIMEOUT_S}
            ).scalar()
            conn.commit()
            if got != 1:
                raise TimeoutError("timed out waiting for another process migrating the store")
        try:
            with conn.begin():
                if dialect == "postgresql":
                    conn.execute(text(_PG_LOCK))
                before = MigrationContext.configure(conn).get_current_revision()
                command.upgrade(alembic_config(conn), revision)
                after = MigrationContext.configure(conn).get_current_revision()
        finally:
            if dialect in ("mysql", "mariadb"):
                conn.execute(text("SELECT RELEASE_LOCK(CONCAT('cxbridge-migrate:', DATABASE()))"))
                conn.commit()
    if before != after:
        logger.info("store %s migrated from %s to %s", store.url, before or "empty", after)
    return before != after
