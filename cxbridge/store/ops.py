"""Portable store helpers: upsert, current time, id generation.

:func:`upsert` writes ``INSERT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL and
``INSERT ... ON DUPLICATE KEY UPDATE`` on MySQL/MariaDB; rows are sent with ``executemany`` in chunks, so
statement size and SQLite's bound-variable limit never grow with the number of rows.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import mysql, postgresql, sqlite

__all__ = ["chunked", "new_id", "upsert", "utcnow"]

UPSERT_CHUNK = 500
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def chunked(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]


class _IdGenerator:
    """ULID-like ids: 48 bits of milliseconds + 80 random bits, Crockford base32 (26 chars).

    Ids made by one process are strictly increasing: within one millisecond the random part is incremented,
    as the ULID spec's monotonic mode does, so sorting by id sorts by creation.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def __call__(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = (self._last_rand + 1) & ((1 << 80) - 1)
            else:
                rand = int.from_bytes(os.urandom(10), "big")
            self._last_ms, self._last_rand = ms, rand
        value = (ms << 80) | rand
        chars = []
        for _ in range(26):
            chars.append(_CROCKFORD[value & 31])
            value >>= 5
        return "".join(reversed(chars))


_gen = _IdGenerator()


def new_id(prefix: str) -> str:
    """A new time-sortable id such as ``cus_01JD3X6Q4W9ZP7K2M8R5T1V0B3`` (``prefix`` + ``_`` + 26 chars)."""
    return f"{prefix}_{_gen()}"


def _normalize(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    # executemany needs the same keys in every row: group rows by their key set.
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(dict(row))
    return groups


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key_cols: Sequence[str],
    update_cols: Sequence[str] | None = None,
    *,
    chunk_size: int = UPSERT_CHUNK,
) -> int:
    """Insert ``rows`` into ``table``; rows whose key exists already are updated (or left alone).

    :param key_cols: the columns of the primary key or a unique constraint that identifies a row.
    :param update_cols: columns overwritten on conflict; default: every column in the row that is not a key
        column. An empty list means *insert or ignore*: existing rows are kept unchanged.
    :returns: the number of rows sent (not the number changed: backends count that differently).
    """
    if not rows:
        return 0
    unknown = {k for row in rows for k in row} - set(table.c.keys())
    if unknown:
        raise KeyError(f"unknown columns for table {table.name}: {sorted(unknown)}")
    name = conn.dialect.name
    for cols, group in _normalize(rows).items():
        updates = [c for c in cols if c not in key_cols] if update_cols is None else list(update_cols)
        updates = [c for c in updates if c in cols]
        stmt: Any
        if name in ("sqlite", "postgresql"):
            mod = sqlite if name == "sqlite" else postgresql
            stmt = mod.insert(table)
            if updates:
                stmt = stmt.on_conflict_do_update(
                    index_elements=list(key_cols), set_={c: stmt.excluded[c] for c in updates}
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=list(key_cols))
        elif name in ("mysql", "mariadb"):
            stmt = mysql.insert(table)
            if updates:
                assignments = {c: stmt.inserted[c] for c in updates}
            else:
                # A no-op assignment of a key column makes "insert or ignore" without INSERT IGNORE's habit
                # of swallowing unrelated errors.
                assignments = {key_cols[0]: table.c[key_cols[0]]}
            stmt = stmt.on_duplicate_key_update(assignments)
        else:  # pragma: no cover - open_store refuses other backends
            raise NotImplementedError(f"upsert is not implemented for {name}")
        for part in chunked(group, chunk_size):
            conn.execute(stmt, list(part))
    return len(rows)
