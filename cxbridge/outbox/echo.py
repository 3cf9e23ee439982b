"""Recognising our own writes when they come back from the CRM (no ping-pong)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select, tuple_

from ..models import SourceRecord
from ..store import schema
from ..store.ops import chunked
from .values import values_equal

__all__ = ["filter_own_writes"]


def filter_own_writes(conn: Connection, source: str, records: Sequence[SourceRecord]) -> dict[str, set[str]]:
    """For a page of ``records`` read from ``source``: the fields of each record that hold our own last write.

    A field counts as our echo when ``writeback_state`` says we wrote it (``by_us``) and the record carries
    exactly that value (compared the way :func:`~cxbridge.outbox.values.values_equal` does). The sync engine
    does not treat echo fields as human edits, and a record whose only changes are echo fields does not make
    its customer "changed" -- so our writes never trigger new work.

    :returns: ``source_id -> {field, ...}``; records without echo fields are absent.
    """
    ws = schema.writeback_state
    by_key = {(r.object_type, r.source_id): r for r in records if not r.deleted}
    out: dict[str, set[str]] = {}
    for part in chunked(sorted(by_key), 500):
        rows = conn.execute(
            select(ws.c.object_type, ws.c.source_id, ws.c.field, ws.c.value).where(
                ws.c.source == source,
                ws.c.by_us.is_(True),
                tuple_(ws.c.object_type, ws.c.source_id).in_(list(part)),
            )
        )
        for row in rows:
            record = by_key[(row.object_type, row.source_id)]
            if row.field in record.fields and values_equal(row.value, record.fields[row.field]):
                out.setdefault(row.source_id, set()).add(row.field)
    return out
