"""The cxbridge adapter contract suite against the fake HubSpot portal.

The initial load pages the list endpoint by id (position in ``Cursor.state``), so the harness declares
``cursor_kind = "state"``; incremental reads (search, ``(modstamp, id)`` cursors) are covered by
test_hubspot_reads.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cxbridge_hubspot import HubSpotAdapter, HubSpotConfig
from cxbridge_hubspot.testing import FakeClock, FakeHubSpot, make_context

from cxbridge.testing.contract import AdapterHarness, get_adapter_test_class


class HubSpotHarness(AdapterHarness):
    stream = "contacts"
    page_size = 5
    capabilities = frozenset({"tombstones", "list_ids", "write", "same_modstamp"})
    cursor_kind = "state"
    mutable_field = "firstname"
    writable_field = "cx_tier"

    def __init__(self, tmp_path: Path) -> None:
        self.fake = FakeHubSpot(clock=FakeClock(start=time.time()))
        self.fake.add_property("contacts", "cx_tier")
        self.n = 0

    def make_adapter(self) -> HubSpotAdapter:
        config = HubSpotConfig(auth={"type": "private_app", "token": "pat-test"}, base_url=self.fake.base_url,
                               list_page_size=self.page_size, search_page_size=self.page_size,
                               archived_sweep_seconds=0, streams=["contacts"])
        return HubSpotAdapter(config, make_context(self.fake, source="contract"))

    def seed(self, n: int, *, modstamp: datetime | None = None) -> list[str]:
        at = int(modstamp.timestamp() * 1000) if modstamp else None
        ids = []
        for _ in range(n):
            self.n += 1
            ids.append(self.fake.add("contacts", {"email": f"c{self.n}@example.com", "firstname": f"C{self.n}"},
                                     at_ms=at))
        self.fake.clock.sleep(1)
        return ids

    def update(self, ids: Sequence[str], fields: Mapping[str, Any]) -> None:
        self.fake.clock.sleep(1)
        for i in ids:
            self.fake.update("contacts", i, dict(fields))
        self.fake.clock.sleep(1)

    def delete(self, ids: Sequence[str]) -> None:
        self.fake.clock.sleep(1)
        for i in ids:
            self.fake.archive("contacts", i)

    def read_back(self, object_type: str, source_id: str) -> Mapping[str, Any]:
        return self.fake.get(object_type, source_id) or {}


TestHubSpotContract = get_adapter_test_class(harness=HubSpotHarness)
