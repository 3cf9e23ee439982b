"""Delete reconciliation for streams whose source does not report deletions (hard deletes).

The source's live ids (``Adapter.list_ids``) are streamed into a temporary table in chunks and compared with
the mirror in SQL, so memory stays flat whatever the size of the CRM; only the ids that vanished come back
to Python (the engine turns them into tombstones).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from sqlalchemy import Column, MetaData, String, Table, exists, insert, select

from ..store import Store
from ..store import schema as s

__all__ = ["vanished_ids"]

CHUNK = 5000


def vanished_ids(store: Store, source: str, object_type: str, live_ids: Iterable[str]) -> list[str]:
    """Ids of live mirror records of ``(source, object_type)`` that are not in ``live_ids``."""
    live = Table("cx_reconcile_live_ids", MetaData(), Column("id", String(255), primary_key=True),
                 prefixes=["TEMPORARY"])
    sr = s.source_records
    with store.connect() as conn:
        live.drop(conn, checkfirst=True)
        live.create(conn)
        try:
            ids = iter(live_ids)
            while chunk := list(islice(ids, CHUNK)):
                conn.execute(insert(live).prefix_with("OR IGNORE" if conn.dialect.name == "sqlite" else ""),
                             [{"id": str(i)} for i in dict.fromkeys(chunk)])
            query = select(sr.c.source_id).where(
                sr.c.source == source, sr.c.object_type == object_type, sr.c.deleted.is_(False),
                ~exists().where(live.c.id == sr.c.source_id),
            )
            gone = [row[0] for row in conn.execute(query)]
        finally:
            live.drop(conn, checkfirst=True)
            conn.commit()
    return gone
