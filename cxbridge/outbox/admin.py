"""Inspecting and re-queueing outbox rows (``cxbridge outbox list|retry|dead``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select, update

from ..errors import NotFound
from ..store import schema

__all__ = ["STATUSES", "count_by_status", "list_items", "retry_items"]

STATUSES = ("pending", "sent", "dead", "skipped")


def list_items(
    conn: Connection,
    *,
    status: str | None = None,
    source: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Outbox rows, newest first, optionally of one status and/or source."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown outbox status {status!r}; use one of {', '.join(STATUSES)}")
    ob = schema.outbox
    query = select(ob).order_by(ob.c.id.desc()).limit(limit)
    if status:
        query = query.where(ob.c.status == status)
    if source:
        query = query.where(ob.c.source == source)
    return [dict(r._mapping) for r in conn.execute(query)]


def count_by_status(conn: Connection, *, source: str | None = None) -> dict[str, int]:
    """Row counts per status (for ``status`` / metrics)."""
    ob = schema.outbox
    query = select(ob.c.status, func.count()).group_by(ob.c.status)
    if source:
        query = query.where(ob.c.source == source)
    counts = {s: 0 for s in STATUSES}
    counts.update({status: int(n) for status, n in conn.execute(query).all()})
    return counts


def retry_items(
    conn: Connection,
    *,
    ids: Sequence[int] = (),
    all_dead: bool = False,
    source: str | None = None,
    now: datetime,
) -> int:
    """Make rows due again: ``dead`` (or waiting ``pending``) rows get ``attempts = 0`` and are sent next time.

    :param ids: outbox row ids; an unknown id or a row already sent raises :class:`NotFound` /
        :class:`ValueError` and nothing changes.
    :param all_dead: every dead row (of ``source`` if given).
    :returns: the number of rows re-queued.
    """
    ob = schema.outbox
    cond: ColumnElement[bool]
    if not ids and not all_dead:
        raise ValueError("name outbox ids or use --all-dead")
    if ids:
        found = {r.id: r.status for r in conn.execute(select(ob.c.id, ob.c.status).where(ob.c.id.in_(list(ids))))}
        unknown = sorted(set(ids) - found.keys())
        if unknown:
            raise NotFound(f"no outbox item with id {', '.join(map(str, unknown))}")
        sent = sorted(i for i, s in found.items() if s == "sent")
        if sent:
            raise ValueError(f"outbox item {', '.join(map(str, sent))} was sent already; nothing to retry")
        cond = ob.c.id.in_(list(ids))
    else:
        cond = ob.c.status == "dead"
        if source:
            cond = cond & (ob.c.source == source)
    result = conn.execute(
        update(ob)
        .where(cond, ob.c.status != "sent")
        .values(status="pending", attempts=0, next_attempt_at=now, last_error=None)
    )
    return int(result.rowcount or 0)
