"""End to end on both stores: a CRM sync -> segments traits -> write-back rules -> outbox -> the CRM's fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cxbridge_segments import plugin
from cxbridge_segments.state import clear_states
from sqlalchemy import select

from cxbridge.adapters import StreamInfo
from cxbridge.outbox import deliver
from cxbridge.store import schema as s
from cxbridge.testing.memory import MemoryAdapter, memory_setup

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
T = NOW - timedelta(days=1)


@pytest.fixture(autouse=True)
def _fresh_states():
    clear_states()
    yield
    clear_states()


def shop() -> MemoryAdapter:
    return MemoryAdapter("shop", [
        StreamInfo("customers", "customers", "customer",
                   default_mapping={"first_name": "fn", "emails": "email"}),
        StreamInfo("orders", "orders", "interaction", customer_object="customers",
                   default_mapping={"customer_ref": "cust", "amount": "total", "currency": "cur",
                                    "type": "kind", "channel": "=web", "occurred_at": "at"}),
    ], clock=lambda: NOW + timedelta(hours=1))


SETTINGS = {
    "as_of": "2024-06-01",
    "fx_rates": {"USD": 0.5},
    "tiers": {
        "mode": "threshold",
        "levels": [
            {"name": "gold", "min_value": 1000, "service_level": {"response_time_hours": 2, "channel": "phone",
                                                                  "account_manager": True}},
            {"name": "silver", "min_value": 200, "service_level": {"response_time_hours": 24, "channel": "email"}},
            {"name": "bronze", "service_level": {"response_time_hours": 72, "channel": "email"}},
        ],
    },
    "rules": {"lapsed_gold": 'tier == "gold" and days_since_last_purchase > 90'},
}
WRITEBACK = [
    {"trait": "segments.tier", "source": "shop", "object_type": "customers", "field": "cx_tier"},
    {"trait": "segments.rfm_segment", "source": "shop", "object_type": "customers", "field": "cx_rfm"},
    {"trait": "segments.service_level.response_time_hours", "source": "shop", "object_type": "customers",
     "field": "cx_response_hours"},
    {"trait": "segments.rule.lapsed_gold", "source": "shop", "object_type": "customers", "field": "cx_winback"},
]


def load(adapter: MemoryAdapter) -> dict[str, float]:
    """25 customers; customer k spends 60*k EUR over k+1 orders; #3 pays partly in USD and gets a refund;
    #24 (gold) stopped buying 200 days ago."""
    expected = {}
    for k in range(25):
        adapter.put("customers", str(k), {"fn": f"N{k}", "email": f"n{k}@example.com"}, modstamp=T)
        if k == 0:
            expected[str(k)] = 0.0
            continue
        days = [200 + 3 * j for j in range(k + 1)] if k == 24 else [2 + 9 * j for j in range(k + 1)]
        for j, ago in enumerate(days):
            adapter.put("orders", f"{k}-{j}", {"cust": str(k), "total": f"{60 * k / (k + 1):.4f}", "cur": "EUR",
                                               "kind": "purchase",
                                               "at": (NOW - timedelta(days=ago)).isoformat()}, modstamp=T)
        expected[str(k)] = 60.0 * k
    adapter.put("orders", "3-usd", {"cust": "3", "total": "100", "cur": "USD", "kind": "purchase",
                                    "at": (NOW - timedelta(days=4)).isoformat()}, modstamp=T)
    adapter.put("orders", "3-ref", {"cust": "3", "total": "20", "cur": "EUR", "kind": "refund",
                                    "at": (NOW - timedelta(days=3)).isoformat()}, modstamp=T)
    expected["3"] += 50.0 - 20.0
    return expected


def tier_of(revenue: float) -> str:
    return "gold" if revenue >= 1000 else "silver" if revenue >= 200 else "bronze"


def test_segment_traits_are_written_back_to_the_crm(store: Any) -> None:
    adapter = shop()
    revenue = load(adapter)
    engine = memory_setup(store, {"shop": adapter}, plugins=(plugin,),
                          config={"sync": {"lookback_seconds": 0}, "plugins": {"segments": SETTINGS},
                                  "writeback": WRITEBACK}, now=lambda: NOW)
    engine.run()
    with store.connect() as conn:
        golden = {r.source_id: r.customer_id for r in conn.execute(
            select(s.source_links.c.source_id, s.source_links.c.customer_id)
            .where(s.source_links.c.object_type == "customers"))}
        traits = {(r.customer_id, r.name): r.value for r in conn.execute(select(s.traits))}
        events = [(r.name, r.customer_id, r.payload) for r in conn.execute(select(s.events))]
    for sid, cid in golden.items():
        assert traits[(cid, "segments.revenue")] == pytest.approx(revenue[sid])
        assert traits[(cid, "segments.tier")] == tier_of(revenue[sid])
    assert traits[(golden["0"], "segments.rfm_segment")] is None
    assert ("segments.entered", golden["24"], {"segment": "lapsed_gold"}) in events

    report = deliver(store, {"shop": adapter}, now=NOW, pm=engine.pm)
    assert report is not None
    live = adapter.live("customers")
    for sid in golden:
        assert live[sid]["cx_tier"] == tier_of(revenue[sid])
        assert live[sid]["cx_response_hours"] == {"gold": 2, "silver": 24, "bronze": 72}[tier_of(revenue[sid])]
        assert live[sid].get("cx_rfm") == traits[(golden[sid], "segments.rfm_segment")]
        assert live[sid].get("cx_winback") is (sid == "24")
    writes = len(adapter.writes)
    # The echo of our own writes is no new work: a second sync writes nothing more.
    engine.run()
    deliver(store, {"shop": adapter}, now=NOW, pm=engine.pm)
    assert len(adapter.writes) == writes

    # A new big order moves customer 5 to gold; only that customer's changed fields go out.
    adapter.put("orders", "5-big", {"cust": "5", "total": "2000", "cur": "EUR", "kind": "purchase",
                                    "at": (NOW - timedelta(hours=2)).isoformat()}, modstamp=NOW)
    engine.run()
    deliver(store, {"shop": adapter}, now=NOW, pm=engine.pm)
    new = adapter.writes[writes:]
    assert {op.source_id for op in new} == {"5"}
    assert adapter.live("customers")["5"]["cx_tier"] == "gold"


def test_refit_job_on_a_store_context_commits_batches_and_delivers_events(store: Any) -> None:
    from cxbridge.sync import StoreContext

    adapter = shop()
    load(adapter)
    seen: list[dict[str, Any]] = []

    class Listener:
        from cxbridge import hookimpl

        @hookimpl
        def events_emitted(self, context: Any, events: Any) -> None:
            seen.extend(events)

    settings = {**SETTINGS, "rules": {"big": "revenue >= 600"}}
    engine = memory_setup(store, {"shop": adapter}, plugins=(Listener(),),
                          config={"sync": {"lookback_seconds": 0}}, now=lambda: NOW)
    engine.run()  # the segments plugin is not registered yet: no traits so far
    engine.pm.register(plugin)
    from cxbridge.config import config_from_dict

    config = config_from_dict({"sources": {"shop": {"adapter": "memory-shop"}},
                               "plugins": {"segments": settings}}, pm=engine.pm)
    context = StoreContext(store, config, engine.pm, now=NOW)
    plugin.refit_job(context)
    assert not context.pending  # flushed batch by batch by the job itself
    with store.connect() as conn:
        tiers = [r.value for r in conn.execute(select(s.traits.c.value).where(s.traits.c.name == "segments.tier"))]
        stored = [r.name for r in conn.execute(select(s.events.c.name))]
    assert len(tiers) == 25 and tiers.count("gold") == 8  # customers 17..24 reached 1,000 EUR
    members = 15  # customers 10..24 reached 600 EUR
    assert stored.count("segments.entered") == members
    assert sum(1 for e in seen if e["name"] == "segments.entered") == members
