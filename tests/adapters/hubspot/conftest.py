"""Fixtures of the HubSpot adapter tests: a fake portal on a fake clock and adapters wired to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cxbridge_hubspot import HubSpotAdapter, HubSpotConfig
from cxbridge_hubspot.testing import DictState, FakeHubSpot, make_context

from cxbridge.adapters import Cursor, Page
from cxbridge.models import SourceRecord


@pytest.fixture
def fake() -> FakeHubSpot:
    return FakeHubSpot()


@pytest.fixture
def state() -> DictState:
    return DictState()


@pytest.fixture
def make_adapter(fake: FakeHubSpot, state: DictState) -> Callable[..., HubSpotAdapter]:
    made: list[HubSpotAdapter] = []

    def build(paced: bool = True, **config: Any) -> HubSpotAdapter:
        config.setdefault("auth", {"type": "private_app", "token": "pat-test"})
        config.setdefault("base_url", fake.base_url)
        context = make_context(fake, state=state, paced=paced)
        adapter = HubSpotAdapter(HubSpotConfig.model_validate(config), context)
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


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
