"""Fixtures: the fake org served by ``responses`` and adapters built against it with the real simple-salesforce."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
from cxbridge_salesforce.adapter import SalesforceAdapter
from cxbridge_salesforce.config import SalesforceConfig
from cxbridge_salesforce.testing import FakeSalesforce

from cxbridge.adapters import AdapterContext
from cxbridge.sources import DictState


class _Budget:
    def acquire(self, cost: int = 1) -> None:
        return None


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    org = FakeSalesforce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        org.install(rsps)
        yield org


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_adapter(fake: FakeSalesforce, sleeps: list[float]) -> Callable[..., SalesforceAdapter]:
    def build(**overrides: Any) -> SalesforceAdapter:
        raw: dict[str, Any] = {
            "auth": {"flow": "refresh_token", "client_id": fake.client_id, "refresh_token": fake.refresh_token},
            "login_url": fake.login_url,
        }
        raw.update(overrides)
        config = SalesforceConfig.model_validate(raw)
        context = AdapterContext(
            source="sfdc",
            http=lambda **kw: None,  # type: ignore[arg-type,return-value]
            state=DictState(),
            budget_factory=lambda key, limit, period: _Budget(),
            sleep=sleeps.append,
            now=lambda: fake.now,
        )
        return SalesforceAdapter(config, context)

    return build
