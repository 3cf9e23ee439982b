"""The ``sync_runs`` history: one row per (source, stream) run, with counts, cursors and heartbeats."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from ..adapters import Cursor
from ..hooktypes import SyncRunInfo
from ..store import schema as s

__all__ = ["finish_run", "last_runs", "start_run", "update_run"]


def start_run(conn: Connection, info: SyncRunInfo, *, full: bool, cursor: Cursor) -> None:
    """Insert the run's row. Runs of the same stream still marked ``running`` died (kill -9, power loss):
    one writer per stream is guaranteed by the scheduler's lock, so they are marked ``failed``."""
    r = s.sync_runs
    conn.execute(update(r).where(r.c.source == info.source, r.c.stream == info.stream, r.c.status == "running")
                 .values(status="failed", finished_at=info.started_at,
                         error="interrupted: the process ended without finishing the run (resumed later)"))
    conn.execute(s.sync_runs.insert().values(
        id=info.id, source=info.source, stream=info.stream, status="running", full=full,
        started_at=info.started_at, heartbeat_at=info.started_at, cursor_before=cursor.to_json(),
    ))


def update_run(conn: Connection, info: SyncRunInfo, now: datetime, cursor: Cursor | None = None) -> None:
    """Counters and heartbeat (called in each page's transaction)."""
    values: dict[str, Any] = dict(
        heartbeat_at=now, records_read=info.records_read, records_changed=info.records_changed,
        records_quarantined=info.records_quarantined, pages=info.pages, api_calls=info.api_calls,
    )
    if cursor is not None:
        values["cursor_after"] = cursor.to_json()
    conn.execute(update(s.sync_runs).where(s.sync_runs.c.id == info.id).values(**values))


def finish_run(conn: Connection, info: SyncRunInfo, now: datetime, cursor: Cursor | None = None) -> SyncRunInfo:
    done = replace(info, finished_at=now)
    update_run(conn, done, now, cursor)
    conn.execute(update(s.sync_runs).where(s.sync_runs.c.id == info.id).values(
        status=done.status, finished_at=now, error=done.error))
    return done


def last_runs(conn: Connection) -> list[Any]:
    """The most recent run of every (source, stream)."""
    r = s.sync_runs
    latest = (
        select(r.c.source, r.c.stream, func.max(r.c.started_at).label("started_at"))
        .group_by(r.c.source, r.c.stream).subquery()
    )
    query = select(r).join(latest, (latest.c.source == r.c.source) & (latest.c.stream == r.c.stream)
                           & (latest.c.started_at == r.c.started_at)).order_by(r.c.source, r.c.stream)
    return list(conn.execute(query))
