"""The plugin through a real SQLite store (StoreContext): the model is shared through the store, and
re-scoring unchanged customers writes nothing."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from cxbridge_segments.pipeline import flush, refit, rescore
from cxbridge_segments.settings import SegmentsSettings
from cxbridge_segments.state import get_state
from segments_fakes import AS_OF
from sqlalchemy import func, select

from cxbridge.adapters import StreamInfo
from cxbridge.store import schema as s
from cxbridge.sync import StoreContext
from cxbridge.testing.memory import MemoryAdapter, memory_setup


def synced_store(store: Any, n: int = 60) -> list[str]:
    a = MemoryAdapter("shop", [
        StreamInfo("customers", "customers", "customer", default_mapping={"emails": "email"}),
        StreamInfo("orders", "orders", "interaction", customer_object="customers",
                   default_mapping={"customer_ref": "cust", "amount": "total", "currency": "=EUR",
                                    "type": "=purchase", "channel": "=web", "occurred_at": "at"}),
    ])
    stamp = AS_OF - timedelta(days=1)
    for i in range(n):
        a.put("customers", str(i), {"email": f"c{i}@example.com"}, modstamp=stamp)
        for k in range(i % 5 + 1):
            a.put("orders", f"{i}-{k}", {"cust": str(i), "total": str(10 + i * k),
                                         "at": (AS_OF - timedelta(days=7 * k + i)).isoformat()}, modstamp=stamp)
    memory_setup(store, {"shop": a}, config={"sync": {"lookback_seconds": 0}}, now=lambda: AS_OF).run()
    with store.connect() as conn:
        return [r[0] for r in conn.execute(select(s.customers.c.id).order_by(s.customers.c.id))]


def count(store: Any, table: Any) -> int:
    with store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_store_path_shares_the_model_and_rewrites_only_changes(sqlite_store: Any) -> None:
    ids = synced_store(sqlite_store)
    settings = SegmentsSettings(as_of=AS_OF)
    config = SimpleNamespace(plugins={"segments": settings}, writeback=[], sources={})
    first = StoreContext(sqlite_store, config, None, now=AS_OF)
    stats = refit(first)
    assert stats.customers == 60 and stats.state.purchasers == 60
    traits, history = count(sqlite_store, s.traits), count(sqlite_store, s.trait_history)
    assert traits >= 60 * 15 and history == traits
    # A second process: reads the stored model (no refit), and unchanged customers cost no writes.
    second = StoreContext(sqlite_store, config, None, now=AS_OF + timedelta(minutes=1))
    again = rescore(second, ids)
    flush(second)
    assert not again.refitted and again.state.fitted_at == stats.state.fitted_at
    assert count(sqlite_store, s.trait_history) == history
    assert get_state(second, settings).diagnostics["scored_all"] is True
