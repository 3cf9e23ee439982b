"""Fixtures of the HubSpot adapter tests: a fake portal on a fake clock and adapters wired to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cxbridge_hubspot import HubSpotAdapter, HubSpotConfig
from cxbridge_hubspot.testing import DictState, FakeHubSpot, make_context
from hubspot_helpers import drain, sync


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


__all__ = ["drain", "fake", "make_adapter", "state", "sync"]
