"""The adapter contract suite against the fake org (real simple-salesforce client), plus plugin registration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import responses
from cxbridge_salesforce.adapter import SalesforceAdapter
from cxbridge_salesforce.config import SalesforceConfig
from cxbridge_salesforce.testing import FakeSalesforce

from cxbridge.adapters import Adapter
from cxbridge.plugins import collect_adapters, get_plugin_manager
from cxbridge.testing.contract import AdapterHarness, get_adapter_test_class, make_test_context


class SalesforceHarness(AdapterHarness):
    stream = "contacts"
    page_size = 5
    capabilities = frozenset({"tombstones", "list_ids", "write", "same_modstamp"})
    mutable_field = "LastName"
    writable_field = "CX_Tier__c"

    def __init__(self, tmp_path: Path) -> None:
        self.fake = FakeSalesforce(page_size=self.page_size)  # REST batches of 5 instead of 2,000
        self.fake.add_field("Contact", "CX_Tier__c")
        self.mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        self.mock.start()
        self.fake.install(self.mock)
        self.n = 0

    def make_adapter(self) -> Adapter:
        config = SalesforceConfig.model_validate({
            "auth": {"flow": "refresh_token", "client_id": self.fake.client_id,
                     "refresh_token": self.fake.refresh_token},
            "login_url": self.fake.login_url,
        })
        return SalesforceAdapter(config, make_test_context("sfdc", now=lambda: self.fake.now))

    def seed(self, n: int, *, modstamp: datetime | None = None) -> list[str]:
        saved = self.fake.now
        if modstamp is not None:
            self.fake.now = modstamp
        out = []
        for _ in range(n):
            self.n += 1
            out.append(self.fake.insert("Contact", LastName=f"Seed{self.n}"))
            if modstamp is None:
                self.fake.tick(1)
        self.fake.now = max(saved, self.fake.now)
        return out

    def update(self, ids: Sequence[str], fields: Mapping[str, Any]) -> None:
        self.fake.tick(2)
        for record_id in ids:
            self.fake.update("Contact", record_id, **fields)

    def delete(self, ids: Sequence[str]) -> None:
        self.fake.tick(2)
        for record_id in ids:
            self.fake.delete("Contact", record_id)

    def read_back(self, object_type: str, source_id: str) -> Mapping[str, Any]:
        return self.fake.data[object_type][source_id]

    def close(self) -> None:
        self.mock.stop()
        self.mock.reset()


TestSalesforceContract = get_adapter_test_class(harness=SalesforceHarness)


def test_plugin_registers_the_salesforce_adapter():
    adapters = collect_adapters(get_plugin_manager())
    info = adapters["salesforce"]
    assert info.config_model is SalesforceConfig
    assert "Bulk API 2.0" in info.description
