"""Engine creation, one-time reflection and column validation for the SQL source."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cxbridge.errors import AdapterError

from .config import LocalSqlConfig, RelatedTable, SqlObject

__all__ = ["Schema", "create_engine", "redacted_url"]

log = logging.getLogger(__name__)


def redacted_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe for logs and errors)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database url>"


def create_engine(config: LocalSqlConfig) -> sa.Engine:
    """Create the engine with the per-dialect settings the adapter relies on.

    - SQLite: pysqlite's own transaction handling defeats SAVEPOINT; the documented SQLAlchemy recipe hands
      BEGIN to SQLAlchemy (https://docs.sqlalchemy.org/en/20/dialects/sqlite.html, "Serializable isolation /
      Savepoints / Transactional DDL"), so per-row savepoints in write-back work.
    - MySQL / MariaDB: the session time zone is UTC so TIMESTAMP columns compare as UTC.
    """
    url = config.url.get_secret_value()
    try:
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=dict(config.connect_args))
    except Exception as exc:  # bad URL / unknown driver: never echo the URL itself
        raise AdapterError(
            f"cannot create database engine for {redacted_url(url)}: {type(exc).__name__}", kind="config"
        ) from None

    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    elif engine.dialect.name in ("mysql", "mariadb"):

        @sa.event.listens_for(engine, "connect")
        def _mysql_connect(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute("SET time_zone = '+00:00'")
            cur.close()

    return engine


class Schema:
    """Reflected tables, reflected once per adapter instance."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._tables: dict[tuple[str | None, str], sa.Table] = {}
        self._metadata = sa.MetaData()

    def table(self, name: str, schema: str | None, *, key: str) -> sa.Table:
        """The reflected table; ``key`` names the config key in errors."""
        cache_key = (schema, name)
        if cache_key not in self._tables:
            try:
                self._tables[cache_key] = sa.Table(name, self._metadata, schema=schema, autoload_with=self.engine)
            except sa.exc.NoSuchTableError:
                where = f"{schema}.{name}" if schema else name
                raise AdapterError(f"table {where!r} does not exist (config key {key})", kind="config") from None
        return self._tables[cache_key]

    @staticmethod
    def require(table: sa.Table, columns: Iterable[str | None], *, key: str) -> None:
        """Raise a config error naming every configured column the table lacks."""
        missing = [c for c in columns if c and c not in table.c]
        if missing:
            raise AdapterError(
                f"table {table.name!r} has no column(s) {', '.join(map(repr, missing))} (config key {key}); "
                f"it has: {', '.join(table.c.keys())}",
                kind="config",
            )


def object_columns(obj: SqlObject) -> list[str | None]:
    """Every column of the main table the object's config names."""
    cols: list[str | None] = [obj.id_column, obj.change_column, obj.soft_delete_column, obj.customer_ref_column]
    cols += list(obj.columns or []) + list(obj.writable_columns or []) + list(obj.anonymize)
    return cols


def related_columns(spec: RelatedTable) -> list[str | None]:
    cols: list[str | None] = [spec.fk, spec.order_by, spec.change_column]
    return cols + list(spec.column_map().values()) + list(spec.where)


def python_id(column: sa.Column[Any], value: str) -> Any:
    """Convert a cursor / op id (always text in cxbridge) to the id column's Python type."""
    try:
        ptype = column.type.python_type
    except NotImplementedError:
        return value
    if ptype is int:
        try:
            return int(value)
        except ValueError:
            return value
    return value


def ids_for(column: sa.Column[Any], ids: Sequence[str]) -> list[Any]:
    return [python_id(column, i) for i in ids]
