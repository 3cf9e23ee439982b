"""StoreContext's bulk-analytics and plugin-state API (``iter_interaction_rows``, ``count_customers``,
``get_state`` / ``set_state``), on SQLite and PostgreSQL, against data synced through the real engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from cxbridge.adapters import StreamInfo
from cxbridge.models import Interaction
from cxbridge.store import schema as s
from cxbridge.sync import StoreContext
from cxbridge.testing import MemoryContext
from cxbridge.testing.memory import MemoryAdapter, memory_setup

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
T = NOW - timedelta(days=1)


def synced(store: Any, orders: dict[str, list[tuple[str, str, int]]]) -> tuple[StoreContext, dict[str, str]]:
    """Customers ``name -> [(order id, kind, amount)]`` synced into ``store``; returns (context, name -> id)."""
    a = MemoryAdapter("shop", [
        StreamInfo("customers", "customers", "customer", default_mapping={"first_name": "fn", "emails": "email"}),
        StreamInfo("orders", "orders", "interaction", customer_object="customers",
                   default_mapping={"customer_ref": "cust", "amount": "total", "currency": "cur",
                                    "type": "kind", "channel": "=web", "occurred_at": "at"}),
    ])
    for n, (name, items) in enumerate(orders.items()):
        a.put("customers", str(n), {"fn": name, "email": f"{name}@example.com"}, modstamp=T)
        for k, (oid, kind, amount) in enumerate(items):
            cur = "USD" if kind == "refund" else "EUR"
            a.put("orders", oid, {"cust": str(n), "total": str(amount), "cur": cur, "kind": kind,
                                  "at": (T - timedelta(days=10 * k)).isoformat()}, modstamp=T)
    eng = memory_setup(store, {"shop": a}, config={"sync": {"lookback_seconds": 0}}, now=lambda: NOW)
    eng.run()
    with store.connect() as conn:
        ids = {row.primary_email.split("@")[0]: row.id
               for row in conn.execute(select(s.customers.c.id, s.customers.c.primary_email))}
    return StoreContext(store, eng.config, eng.pm, now=NOW), ids


ORDERS = {
    "ann": [("a1", "purchase", 10), ("a2", "purchase", 20), ("a3", "refund", 5), ("a4", "call", 0)],
    "bob": [("b1", "purchase", 7)],
    "cat": [("c1", "purchase", 1), ("c2", "purchase", 2), ("c3", "purchase", 3), ("c4", "purchase", 4),
            ("c5", "purchase", 5)],
    "dan": [("d1", "purchase", 99)],
    "eve": [],
}


def test_interaction_rows_are_plain_tuples_by_customer_and_skip_erased_and_opted_out(store: Any) -> None:
    ctx, ids = synced(store, ORDERS)
    with store.begin() as conn:
        conn.execute(update(s.customers).where(s.customers.c.id == ids["dan"]).values(erased=True))
        conn.execute(update(s.customers).where(s.customers.c.id == ids["bob"]).values(processing_opt_out=True))
        conn.execute(update(s.interactions).where(s.interactions.c.source_id == "c5").values(deleted=True))
    batches = list(ctx.iter_interaction_rows(["purchase", "refund"], batch_size=2))
    rows = [r for b in batches for r in b]
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # ordered by customer
    by_customer: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        by_customer.setdefault(r[0], []).append(r)
    assert set(by_customer) == {ids["ann"], ids["cat"]}  # dan erased, bob opted out, eve has none
    # A batch never splits a customer: cat's four live purchases (more than batch_size) come in one batch.
    for batch in batches:
        for cid in {r[0] for r in batch}:
            assert sum(r[0] == cid for r in batch) == len(by_customer[cid])
    ann = by_customer[ids["ann"]]
    assert sorted((r[4], r[2], r[3]) for r in ann) == [("purchase", 10.0, "EUR"), ("purchase", 20.0, "EUR"),
                                                        ("refund", 5.0, "USD")]
    assert all(isinstance(r[2], float) and r[1].tzinfo is not None for r in rows)
    assert [r[1] for r in ann] == sorted(r[1] for r in ann)
    assert min(r[1] for r in ann) == T - timedelta(days=20)
    everyone = {r[0] for b in ctx.iter_interaction_rows(include_processing_opt_out=True) for r in b}
    assert everyone == {ids["ann"], ids["bob"], ids["cat"]}  # every type; dan stays out (erased)


def test_count_customers(store: Any) -> None:
    ctx, ids = synced(store, ORDERS)
    assert ctx.count_customers() == 5
    assert ctx.count_customers(["purchase"]) == 4
    assert ctx.count_customers(["refund"]) == 1
    with store.begin() as conn:
        conn.execute(update(s.customers).where(s.customers.c.id == ids["dan"]).values(erased=True))
    assert (ctx.count_customers(), ctx.count_customers(["purchase"])) == (4, 3)


def test_plugin_state_is_shared_through_the_store(store: Any) -> None:
    ctx, _ = synced(store, {"ann": []})
    assert ctx.get_state("segments.model") is None
    ctx.set_state("segments.model", {"edges": [1.0, 2.5], "fitted_at": NOW, "n": 3})
    other = StoreContext(store, None, None)  # another process / worker
    assert other.get_state("segments.model") == {"edges": [1.0, 2.5], "fitted_at": NOW.isoformat(), "n": 3}
    with store.connect() as conn:
        row = conn.execute(select(s.source_state).where(s.source_state.c.source == "plugin:segments")).one()
    assert row.key == "model"
    other.set_state("segments.model", {"n": 4})
    assert ctx.get_state("segments.model") == {"n": 4}
    ctx.set_state("segments.model", None)
    assert other.get_state("segments.model") is None
    with pytest.raises(ValueError, match=r"<namespace>\.<name>"):
        ctx.set_state("model", 1)


def test_get_interactions_builds_models_equal_to_validated_ones(store: Any) -> None:
    ctx, ids = synced(store, ORDERS)
    items = ctx.get_interactions([ids["ann"], ids["eve"]])
    assert items[ids["eve"]] == []
    got = items[ids["ann"]]
    assert [i.source_id for i in got] == ["a4", "a3", "a2", "a1"]  # oldest first
    for item in got:
        assert item == Interaction.model_validate(item.model_dump())
        assert item.occurred_at.tzinfo is not None and item.type.value in ("purchase", "refund", "call")


def test_memory_context_implements_the_same_api() -> None:
    items = [Interaction(id=f"i{k}", customer_id=cid, source="s", object_type="o", source_id=str(k),
                         type="purchase", occurred_at=NOW - timedelta(days=k), amount=k, currency="EUR")
             for k, cid in enumerate(["b", "a", "b", "a", "a"])]
    from cxbridge.models import Consent, Customer

    opted_out = Customer(id="c", consent=Consent(processing_opt_out=True))
    other = Interaction(id="x", customer_id="c", source="s", object_type="o", source_id="x", type="purchase",
                        occurred_at=NOW)
    ctx = MemoryContext([Customer(id="a"), Customer(id="b"), opted_out], [*items, other])
    batches = list(ctx.iter_interaction_rows(["purchase"], batch_size=2))
    assert [[r[0] for r in b] for b in batches] == [["a", "a", "a"], ["b", "b"]]
    assert ctx.count_customers(["purchase"]) == 3 and ctx.count_customers() == 3
    ctx.set_state("segments.model", {"at": NOW})
    assert ctx.get_state("segments.model") == {"at": NOW.isoformat()}
