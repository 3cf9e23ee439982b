"""Helpers shared by the Salesforce adapter tests."""

from __future__ import annotations

from typing import Any

from cxbridge_salesforce.adapter import SalesforceAdapter

from cxbridge.adapters import Cursor, Page


def drain(
    adapter: SalesforceAdapter, stream: str, cursor: Cursor | None = None, **kw: Any
) -> tuple[list[Page], Cursor]:
    """Read a stream to the end; returns the pages and the last cursor (what the engine would commit)."""
    pages = list(adapter.read(stream, cursor or Cursor(), **kw))
    last = pages[-1].cursor if pages else (cursor or Cursor())
    return pages, last


def ids(pages: list[Page]) -> list[str]:
    return [r.source_id for p in pages for r in p.records]
