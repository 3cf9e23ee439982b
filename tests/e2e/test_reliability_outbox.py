"""Write-back survives a crash between the CRM write and the outbox bookkeeping: each value lands once.

A plugin computes a tier per customer; a write-back rule sends it to a local SQL CRM column. The first
delivery "dies" right after the CRM accepted the batch (before the outbox recorded it); after the lease
expires the retry sends the same ops with the same idempotency keys; the next sync reads our own writes
back without treating them as changes (no new outbox rows, no recomputation loop).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cxbridge import hookimpl
from cxbridge.config import config_from_dict
from cxbridge.hooktypes import TraitInfo
from cxbridge.outbox import deliver
from cxbridge.plugins import get_plugin_manager
from cxbridge.sources import build_adapter
from cxbridge.store import schema as s
from cxbridge.sync import SyncEngine


class Crash(BaseException):
    """The process dying (not an Exception: nothing in the framework may swallow it)."""


class Tiers:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def register_traits(self) -> list[TraitInfo]:
        return [TraitInfo(name="test.tier")]

    @hookimpl
    def customers_changed(self, context: Any, customer_ids: list[str]) -> None:
        self.seen.extend(customer_ids)
        for c in context.get_customers(customer_ids):
            tier = "gold" if c.full_name and c.full_name.startswith("A") else "silver"
            context.set_traits(c.id, {"test.tier": tier}, producer="tiers")


def test_outbox_retry_after_crash_writes_each_value_once(tmp_path: Path, store: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "crm.db"
    db = sqlite3.connect(source)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, cx_tier TEXT, "
               "updated_at TEXT NOT NULL)")
    db.executemany("INSERT INTO customers VALUES (?,?,?,NULL,?)",
                   [(i, f"{'A' if i % 2 else 'B'}-person {i}", f"p{i}@example.com", "2024-03-01 10:00:00.000000")
                    for i in range(1, 31)])
    db.commit()
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "cxbridge-local")
    pm = get_plugin_manager()
    plugin = Tiers()
    pm.register(plugin)
    config = config_from_dict({
        "sync": {"lookback_seconds": 0},
        "sources": {"crm": {"adapter": "local-sql", "connection": {
            "url": f"sqlite:///{source}", "page_size": 10,
            "objects": {"customers": {"table": "customers", "change_column": "updated_at",
                                      "mapping": {"full_name": "name", "emails": "email"}}}}}},
        "writeback": [{"trait": "test.tier", "source": "crm", "object_type": "customers", "field": "cx_tier"}],
    }, pm=pm)
    adapter = build_adapter(config, "crm", pm=pm, store=store)
    engine = SyncEngine(store, config, pm, {"crm": adapter})
    engine.run()
    with store.connect() as conn:
        planned = conn.execute(select(s.outbox.c.idempotency_key, s.outbox.c.status)).all()
    assert len(planned) == 30 and {p.status for p in planned} == {"pending"}

    calls: list[list[str]] = []
    real_write = adapter.write

    def dying_write(ops: Any) -> Any:
        results = real_write(ops)  # the CRM accepted the batch...
        calls.append([op.key for op in ops])
        if len(calls) == 1:
            raise Crash  # ...and the process died before the outbox recorded it
        return results

    adapter.write = dying_write  # type: ignore[method-assign]
    now = datetime.now(UTC)
    with pytest.raises(Crash):
        deliver(store, {"crm": adapter}, now=now, pm=pm)
    crashed_batch = set(calls[0])
    # restart: nothing is due until the lease of the crashed batch expires
    deliver(store, {"crm": adapter}, now=now + timedelta(seconds=1), pm=pm)
    later = now + timedelta(minutes=10)
    report = deliver(store, {"crm": adapter}, now=later, pm=pm)
    assert report.sent >= len(crashed_batch)
    sent_keys = [k for batch in calls for k in batch]
    assert sorted(set(sent_keys)) == sorted(p.idempotency_key for p in planned)  # the same ops, same keys
    assert all(sent_keys.count(k) == (2 if k in crashed_batch else 1) for k in set(sent_keys))
    tiers = dict(db.execute("SELECT id, cx_tier FROM customers").fetchall())
    assert tiers == {i: ("gold" if i % 2 else "silver") for i in range(1, 31)}
    with store.connect() as conn:
        statuses = {r.status for r in conn.execute(select(s.outbox.c.status))}
    assert statuses == {"sent"}

    # our writes come back (the CRM stamped them): stored, but no recomputation and no new writes
    plugin.seen.clear()
    adapter.write = real_write  # type: ignore[method-assign]
    (run,) = engine.run()
    assert run.records_changed == 0  # read back and stored, but not counted or treated as changes
    with store.connect() as conn:
        echoed = [r.fields["cx_tier"] for r in conn.execute(select(s.source_records.c.fields))]
    assert sorted(echoed) == sorted("gold" if i % 2 else "silver" for i in range(1, 31))
    assert plugin.seen == []
    with store.connect() as conn:
        assert len(conn.execute(select(s.outbox.c.id)).all()) == 30
