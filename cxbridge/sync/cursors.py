"""Stream cursors: load, look-back, clamp, never backwards (ARCHITECTURE §6.2).

A cursor is ``(modstamp, last_id)`` read inclusively: the adapter returns records with
``modstamp > m OR (modstamp = m AND id > last_id)``; with ``last_id = None`` everything at ``m`` is re-read.
Rules applied here:

- **look-back**: reads start ``lookback`` before the saved modstamp (and with ``last_id = None``), so records
  whose modstamp was assigned late (long transactions, replication lag) are not missed; re-read records are
  de-duplicated by content hash;
- **clamp**: a committed cursor never moves past the run's start minus the safety margin -- records modified
  while we page may carry stamps up to "now", and stamps in the future (skewed clocks) must not push the
  cursor past records that are yet to be written. A clamped cursor drops ``last_id``;
- **never backwards**: a page cursor below the saved one (pages of a look-back read) keeps the saved position;
  only the adapter's opaque ``state`` moves;
- a saved cursor **from the future** (beyond run start minus margin) cannot be trusted -- it was made by a
  clock that ran ahead, so records changed since then may carry earlier stamps: the run reads from the start
  (content hashes make that idempotent) and logs a warning.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from ..adapters import Cursor
from ..store import schema as s
from ..store.ops import upsert

__all__ = ["advance", "clamp", "load_cursor", "read_start", "save_cursor"]

logger = logging.getLogger(__name__)


def _before(a: Cursor, b: Cursor) -> bool:
    """Whether position ``a`` lies before ``b`` (both with a modstamp).

    Ties on the modstamp compare the ids the way sources order them: numerically when both are digit strings
    (SQL integer keys, HubSpot ids), else as strings (Salesforce ids); no id = the start of the tie group.
    """
    assert a.modstamp is not None and b.modstamp is not None
    if a.modstamp != b.modstamp:
        return a.modstamp < b.modstamp
    if a.last_id is None or b.last_id is None:
        return a.last_id is None and b.last_id is not None
    if a.last_id.isdigit() and b.last_id.isdigit():
        return int(a.last_id) < int(b.last_id)
    return a.last_id < b.last_id


def load_cursor(conn: Connection, source: str, stream: str) -> Cursor:
    """The committed cursor of ``(source, stream)`` (empty when the stream never synced)."""
    row = conn.execute(
        select(s.cursors.c.cursor).where(s.cursors.c.source == source, s.cursors.c.stream == stream)
    ).first()
    return Cursor.from_json(row[0] if row else None)


def save_cursor(conn: Connection, source: str, stream: str, cursor: Cursor, run_id: str, now: datetime) -> None:
    """Write the cursor (in the caller's transaction -- the page's)."""
    upsert(conn, s.cursors, [{"source": source, "stream": stream, "cursor": cursor.to_json(), "run_id": run_id,
                              "updated_at": now}], ["source", "stream"])


def clamp(cursor: Cursor, limit: datetime) -> Cursor:
    """``cursor`` moved back to ``limit`` (and ``last_id`` dropped) if it lies beyond it."""
    if cursor.modstamp is not None and cursor.modstamp > limit:
        return Cursor(modstamp=limit, last_id=None, state=cursor.state)
    return cursor


def read_start(saved: Cursor, lookback: timedelta, limit: datetime) -> Cursor:
    """The cursor a run reads from: the saved one clamped to ``limit``, minus the look-back window."""
    if saved.modstamp is not None and saved.modstamp > limit:
        logger.warning("cursor %s lies in the future (now minus margin: %s); reading from the start",
                       saved.modstamp.isoformat(), limit.isoformat())
        return Cursor(state=saved.state)
    if saved.modstamp is None or not lookback:
        return saved
    return Cursor(modstamp=saved.modstamp - lookback, last_id=None, state=saved.state)


def advance(saved: Cursor, page: Cursor, limit: datetime) -> Cursor:
    """The cursor to commit after a page: the page's, clamped, never behind ``saved``; state always moves."""
    new = clamp(page, limit)
    if saved.modstamp is not None and (new.modstamp is None or _before(new, saved)):
        return Cursor(modstamp=saved.modstamp, last_id=saved.last_id, state=page.state)
    return new
