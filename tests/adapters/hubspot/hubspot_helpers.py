"""Helpers of the HubSpot adapter tests (a uniquely named module: ``conftest`` names clash across folders)."""

from __future__ import annotations

from cxbridge_hubspot import HubSpotAdapter

from cxbridge.adapters import Cursor, Page
from cxbridge.models import SourceRecord


def drain(adapter: HubSpotAdapter, stream: str, cursor: Cursor | None = None, *, full: bool = False,
          stop_after: int | None = None) -> tuple[list[SourceRecord], Cursor, list[Page]]:
    """Read ``stream`` like the engine: commit each page's cursor; optionally 'crash' after N pages."""
    cur = cursor or Cursor()
    records: list[SourceRecord] = []
    pages: list[Page] = []
    for page in adapter.read(stream, cur, full=full):
        records.extend(page.records)
        pages.append(page)
        cur = page.cursor
        if stop_after is not None and len(pages) >= stop_after:
            break
    return records, cur, pages


def sync(adapter: HubSpotAdapter, stream: str,
         cursor: Cursor | None = None) -> tuple[dict[str, SourceRecord], Cursor]:
    """Run to completion, upserting by id (the store's idempotent upsert); returns the mirror and cursor."""
    records, cur, _ = drain(adapter, stream, cursor)
    mirror: dict[str, SourceRecord] = {}
    for rec in records:
        mirror[rec.source_id] = rec
    return mirror, cur
