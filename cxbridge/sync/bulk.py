"""Bulk writes for the sync hot path.

On SQLite (the embedded default and the benchmark target) rows go straight to the DBAPI cursor's
``executemany`` with values converted by the same bind processors SQLAlchemy would use, so the stored
representation is identical to a Core insert while the per-row cost is a third of it (measured: ~43k rows/s
through Core vs ~124k rows/s raw for ``source_records`` upserts). Values every row of a batch shares (the
source, the stream, the run, the page's timestamp, flags, NULLs) are written into the statement as SQL
literals instead of being bound once per row (:func:`_sql_literal`). Other backends use
:func:`cxbridge.store.ops.upsert` (Core), where the network round trip dominates anyway.

JSON columns accept :class:`RawJSON` (an already serialized string) to avoid serializing twice: the engine
serializes raw fields once to hash them and stores the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, String, Table, and_, bindparam, select

from ..store.jsoncodec import compact_encoder, loads
from ..store.ops import chunked, upsert
from ..store.schema import UTCDateTime

__all__ = ["RawJSON", "bulk_delete", "bulk_upsert", "bulk_upsert_values", "compact_encoder", "select_in"]

CHUNK = 1000


class RawJSON(str):
    """A JSON document already serialized; stored as is in JSON columns."""

    __slots__ = ()


_dumps = compact_encoder()


def _json_proc(v: Any) -> Any:
    """A JSON column's value as text: :class:`RawJSON` as a plain ``str`` (see :func:`_convert_column`),
    anything else serialized."""
    if v is None:
        return None
    return str(v) if isinstance(v, RawJSON) else _dumps(v)


def _memo(proc: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A processor that remembers its last value (the page's ``now`` repeats in every row).

    The (value, result) pair is replaced as one object, so threads sharing the processor never see a value
    with another value's result.
    """
    last: list[tuple[Any, Any]] = [(object(), None)]

    def memo(v: Any) -> Any:
        seen = last[0]
        if seen[0] is v:
            return seen[1]
        out = proc(v)
        last[0] = (v, out)
        return out

    return memo


_PROCS: dict[tuple[int, str], list[Callable[[Any], Any] | None]] = {}
_SQL: dict[tuple[int, tuple[str, ...], tuple[str, ...], tuple[str, ...] | None], str] = {}


def _processors(conn: Connection, table: Table, cols: Sequence[str]) -> list[Callable[[Any], Any] | None]:
    dialect = conn.dialect
    out: list[Callable[[Any], Any] | None] = []
    for name in cols:
        cache_key = (id(table.c[name]), dialect.name)
        cached = _PROCS.get(cache_key)
        if cached is not None:
            out.append(cached[0])
            continue
        column_type = table.c[name].type
        proc: Callable[[Any], Any] | None
        if isinstance(column_type, JSON):
            proc = _json_proc

        elif isinstance(column_type, Boolean):

            def proc(v: Any) -> Any:
                return None if v is None else int(bool(v))

        elif isinstance(column_type, UTCDateTime) and dialect.name == "sqlite":
            proc = _sqlite_utc_processor(column_type.dialect_impl(dialect).bind_processor(dialect))
        else:
            proc = column_type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                proc = _memo(proc)
        _PROCS[cache_key] = [proc]
        out.append(proc)
    return out


def _sqlite_utc_processor(general: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """:class:`~cxbridge.store.schema.UTCDateTime` on SQLite: UTC and naive (= UTC) datetimes are written as
    ``isoformat(" ", "microseconds")`` -- the text SQLAlchemy's SQLite ``DATETIME`` stores
    (``2024-01-02 03:04:05.000006``; tested against it) -- without the type decorator's conversions; other
    values take the general processor. The last value is remembered: records changed together share a
    modstamp."""
    assert general is not None
    utc = UTC

    def proc(v: Any) -> Any:
        if type(v) is datetime:
            tz = v.tzinfo
            if tz is None:
                return v.isoformat(" ", "microseconds")
            if tz is utc:
                return v.replace(tzinfo=None).isoformat(" ", "microseconds")
        return general(v)

    return _memo(proc)


def bulk_upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key_cols: Sequence[str],
    update_cols: Sequence[str] | None = None,
) -> None:
    """Insert or update ``rows`` (all with the same keys) in ``table``; see :func:`cxbridge.store.ops.upsert`.

    :param update_cols: columns overwritten on conflict (default: all non-key columns; ``[]`` = insert or
        ignore).
    """
    if not rows:
        return
    cols = tuple(rows[0].keys())
    if conn.dialect.name != "sqlite":
        converted = [
            {k: (loads(v) if isinstance(v, RawJSON) else v) for k, v in row.items()} for row in rows
        ]
        upsert(conn, table, converted, key_cols, update_cols)
        return
    getter = itemgetter(*cols)
    if len(cols) == 1:
        values: list[list[Any]] = [[getter(row)] for row in rows]
    else:
        values = [list(getter(row)) for row in rows]
    _sqlite_upsert(conn, table, cols, values, key_cols, update_cols)


def bulk_upsert_values(
    conn: Connection,
    table: Table,
    cols: Sequence[str],
    values: list[list[Any]],
    key_cols: Sequence[str],
    update_cols: Sequence[str] | None = None,
) -> None:
    """:func:`bulk_upsert` for rows given as lists in ``cols`` order (the hot path builds no dicts).

    The lists are converted in place (bind processors) on SQLite; do not reuse them afterwards.
    """
    if not values:
        return
    if conn.dialect.name != "sqlite":
        bulk_upsert(conn, table, [dict(zip(cols, row, strict=True)) for row in values], key_cols, update_cols)
        return
    _sqlite_upsert(conn, table, tuple(cols), values, key_cols, update_cols)


def _sqlite_upsert(
    conn: Connection,
    table: Table,
    cols: tuple[str, ...],
    values: list[list[Any]],
    key_cols: Sequence[str],
    update_cols: Sequence[str] | None,
) -> None:
    updates = tuple(c for c in cols if c not in key_cols) if update_cols is None else tuple(update_cols)
    procs = _processors(conn, table, cols)
    literals: list[str | None] = [None] * len(cols)
    inline = len(values) >= _INLINE_MIN_ROWS
    for i, p in enumerate(procs):
        if p is None and not inline:
            continue  # nothing to convert, nothing to write as a literal
        first = values[0][i]
        shared = True
        for row in values:
            if row[i] is not first:
                shared = False
                break
        if not shared:
            if p is not None:
                _convert_column(values, i, p)
            continue
        # one object in every row (the page's timestamp, a flag, an empty document): convert it once
        converted = first if p is None else p(first)
        literal = _sql_literal(converted) if inline else None
        if literal is not None:
            literals[i] = literal
        elif p is not None:
            for row in values:
                row[i] = converted
    keep = [i for i, literal in enumerate(literals) if literal is None]
    if not keep:  # every column the same in every row: the rows are one row
        keep, literals[0], values = [0], None, values[:1]
    bound_only = len(keep) == len(cols)  # no literal: the statement is the same for every batch (cached)
    sql_key = (id(table), cols, tuple(key_cols), updates)
    sql = _SQL.get(sql_key) if bound_only else None
    if sql is None:
        conflict = f" ON CONFLICT ({', '.join(key_cols)}) DO "
        conflict += (
            "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in updates) if updates else "NOTHING"
        )
        sql = (
            f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join(v or '?' for v in literals)})"
            + conflict
        )
        if bound_only:
            _SQL[sql_key] = sql
    params: list[Any]
    if bound_only:
        params = values
    elif len(keep) == 1:
        k = keep[0]
        params = [(row[k],) for row in values]
    else:
        params = list(map(itemgetter(*keep), values))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for part in chunked(params, CHUNK):
            cursor.executemany(sql, part)
    finally:
        cursor.close()


def _convert_column(values: list[list[Any]], i: int, proc: Callable[[Any], Any]) -> None:
    """Convert column ``i`` of every row in place with its bind processor."""
    if proc is _json_proc:  # inline: a call per document saved
        # Already serialized text is bound as a plain str: the driver binds only exact str objects directly
        # and sends a subclass through its adapter lookup (~0.9 us more per value, measured); the copy costs
        # a tenth of that.
        dumps, raw = _dumps, RawJSON
        for row in values:
            v = row[i]
            if v is not None:
                row[i] = str(v) if v.__class__ is raw else dumps(v)
    else:
        for row in values:
            row[i] = proc(row[i])


#: Batches of at least this many rows get the values every row shares written into the statement as SQL
#: literals (the statement is prepared once per batch): binding costs the driver ~1.5k CPU instructions per
#: value and a ``None`` much more (its adapter lookup raises and clears two AttributeErrors), measured with
#: callgrind; a page shares 8 of 13 mirror columns (source, stream, run, timestamps, flags).
_INLINE_MIN_ROWS = 8
#: longer shared texts are bound as usual
_INLINE_MAX_TEXT = 512


def _sql_literal(value: Any) -> str | None:
    """``value`` as an SQLite literal, or None when it should stay a bound parameter."""
    if value is None:
        return "NULL"
    kind = value.__class__
    if kind is int:
        return str(value)
    if (kind is str or kind is RawJSON) and len(value) <= _INLINE_MAX_TEXT and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def bulk_delete(conn: Connection, table: Table, key_cols: Sequence[str], keys: Sequence[Sequence[Any]]) -> None:
    """Delete the rows whose ``key_cols`` equal each tuple in ``keys`` (executemany by primary key)."""
    if not keys:
        return
    stmt = table.delete().where(and_(*(table.c[c] == bindparam(f"k{i}") for i, c in enumerate(key_cols))))
    for part in chunked(list(keys), CHUNK):
        conn.execute(stmt, [{f"k{i}": v for i, v in enumerate(k)} for k in part])


#: values per ``IN (...)`` on SQLite (its limit on bound variables is 32,766 since 3.32)
SQLITE_IN_CHUNK = 5000


def select_in(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    equal: Mapping[str, Any],
    in_column: str,
    values: Sequence[Any],
) -> list[tuple[Any, ...]]:
    """Rows ``(columns...)`` of ``table`` where ``equal`` holds and ``in_column`` is one of ``values``.

    The page's lookups (content hashes, links, key owners) return plain strings; on SQLite they go to the
    DBAPI cursor of the same connection (same transaction) with one statement per 5,000 values instead of
    SQLAlchemy's expanding ``IN`` (whose per-value compilation cost more than the query). Only string
    columns are allowed there, so the values are exactly what a Core select returns. Other backends use Core.
    """
    if not values:
        return []
    if conn.dialect.name != "sqlite" or not all(isinstance(table.c[c].type, String) for c in columns):
        t = table
        out: list[tuple[Any, ...]] = []
        cond = [t.c[k] == v for k, v in equal.items()]
        for part in chunked(list(values), IN_CHUNK_CORE):
            query = select(*(t.c[c] for c in columns)).where(*cond, t.c[in_column].in_(part))
            out.extend(tuple(row) for row in conn.execute(query))
        return out
    head = f"SELECT {', '.join(columns)} FROM {table.name} WHERE "
    head += "".join(f"{k} = ? AND " for k in equal) + f"{in_column} IN ("
    return sqlite_in_rows(conn, head, list(equal.values()), values)


def sqlite_in_rows(conn: Connection, head: str, fixed: Sequence[Any], values: Sequence[Any]) -> list[Any]:
    """Rows of ``head`` -- SQL ending in ``IN (`` -- run on SQLite's DBAPI cursor of ``conn`` (same
    transaction) with ``fixed`` parameters first and one statement per 5,000 ``values``."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        rows: list[Any] = []
        for part in chunked(list(values), SQLITE_IN_CHUNK):
            cursor.execute(head + ",".join("?" * len(part)) + ")", [*fixed, *part])
            rows.extend(cursor.fetchall())
        return rows
    finally:
        cursor.close()


IN_CHUNK_CORE = 500
