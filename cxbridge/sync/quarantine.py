"""The quarantine: records that could not be used, with the reason, until replayed or discarded.

Rows live in ``quarantine``: ``open`` -> ``replayed`` | ``discarded`` | ``resolved`` (the record was fixed
in the source and read again) | ``superseded`` (a newer bad version of the same record replaced it).
``raw`` holds the whole :class:`~cxbridge.models.SourceRecord` as JSON, so a replay after a mapping or config
fix re-runs the record through the current mapping exactly as if the adapter had returned it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from ..models import SourceRecord
from ..store import schema as s
from .convert import jsonable

__all__ = ["QuarantineItem", "add", "counts", "has_open", "list_items", "mark", "record_of", "resolve"]


@dataclass(frozen=True)
class QuarantineItem:
    id: int
    source: str
    stream: str
    object_type: str | None
    source_id: str | None
    reason: str
    raw: dict[str, Any]
    status: str
    run_id: str | None
    created_at: datetime


def raw_of(record: SourceRecord) -> dict[str, Any]:
    """The JSON form of a record kept for replay."""
    return {
        "source": record.source,
        "object_type": record.object_type,
        "source_id": record.source_id,
        "modstamp": record.modstamp.isoformat() if record.modstamp else None,
        "fields": jsonable(record.fields),
        "deleted": record.deleted,
        "merged_into": record.merged_into,
        "associations": record.associations,
    }


def record_of(raw: dict[str, Any]) -> SourceRecord:
    """The record a quarantine row holds."""
    return SourceRecord.model_validate(raw)


def add(
    conn: Connection, source: str, stream: str, items: Sequence[tuple[SourceRecord, str]], run_id: str | None,
    now: datetime,
) -> None:
    """Quarantine ``(record, reason)`` pairs. An open row for the same record is replaced (newest wins)."""
    if not items:
        return
    q = s.quarantine
    ids = [r.source_id for r, _ in items]
    existing = {
        row.source_id: (row.reason, row.raw)
        for row in conn.execute(select(q.c.source_id, q.c.reason, q.c.raw).where(
            q.c.source == source, q.c.stream == stream, q.c.status == "open", q.c.source_id.in_(ids)))
    }
    # The same record with the same problem (re-read through the look-back window) is already there.
    items = [(r, reason) for r, reason in items if existing.get(r.source_id) != (reason[:4000], raw_of(r))]
    if not items:
        return
    conn.execute(
        update(q)
        .where(q.c.source == source, q.c.stream == stream, q.c.status == "open",
               q.c.source_id.in_([r.source_id for r, _ in items]))
        .values(status="superseded", resolved_at=now)
    )
    conn.execute(q.insert(), [
        {"source": source, "stream": stream, "object_type": r.object_type, "source_id": r.source_id,
         "reason": reason[:4000], "raw": raw_of(r), "status": "open", "run_id": run_id, "created_at": now}
        for r, reason in items
    ])


def list_items(
    conn: Connection, *, status: str | None = "open", source: str | None = None, ids: Iterable[int] | None = None,
    limit: int | None = None,
) -> list[QuarantineItem]:
    q = s.quarantine
    query = select(q).order_by(q.c.id)
    if status:
        query = query.where(q.c.status == status)
    if source:
        query = query.where(q.c.source == source)
    if ids is not None:
        query = query.where(q.c.id.in_(list(ids)))
    if limit:
        query = query.limit(limit)
    return [
        QuarantineItem(id=r.id, source=r.source, stream=r.stream, object_type=r.object_type, source_id=r.source_id,
                       reason=r.reason, raw=r.raw, status=r.status, run_id=r.run_id, created_at=r.created_at)
        for r in conn.execute(query)
    ]


def mark(conn: Connection, ids: Sequence[int], status: str, now: datetime) -> None:
    if ids:
        q = s.quarantine
        conn.execute(update(q).where(q.c.id.in_(list(ids))).values(status=status, resolved_at=now))


def resolve(conn: Connection, source: str, stream: str, source_ids: Sequence[str], now: datetime) -> None:
    """Close open rows of records that have now been stored (fixed in the source and read again)."""
    q = s.quarantine
    for i in range(0, len(source_ids), 500):
        conn.execute(update(q).where(q.c.source == source, q.c.stream == stream, q.c.status == "open",
                                     q.c.source_id.in_(source_ids[i : i + 500]))
                     .values(status="resolved", resolved_at=now))


def has_open(conn: Connection, source: str, stream: str) -> bool:
    """Whether the stream has open quarantine rows."""
    q = s.quarantine
    return conn.execute(select(q.c.id).where(q.c.source == source, q.c.stream == stream, q.c.status == "open")
                        .limit(1)).first() is not None


def counts(conn: Connection) -> dict[tuple[str, str], int]:
    """Open quarantine rows per (source, stream)."""
    q = s.quarantine
    rows = conn.execute(
        select(q.c.source, q.c.stream, func.count()).where(q.c.status == "open").group_by(q.c.source, q.c.stream)
    )
    return {(a, b): n for a, b, n in rows}
