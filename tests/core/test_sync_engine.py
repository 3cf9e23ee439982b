"""The sync engine on both stores: quarantine and replay, plugin isolation, traits, interactions, failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from cxbridge import hookimpl
from cxbridge.adapters import StreamInfo
from cxbridge.errors import RecordError
from cxbridge.store import schema as s
from cxbridge.sync import StoreContext
from cxbridge.testing.memory import MemoryAdapter, memory_setup

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
T = NOW - timedelta(days=1)


def crm(**kw: Any) -> MemoryAdapter:
    return MemoryAdapter("shop", [
        StreamInfo("customers", "customers", "customer",
                   default_mapping={"first_name": "fn", "emails": "email", "custom.tier": "cx_tier"}),
        StreamInfo("orders", "orders", "interaction", customer_object="customers",
                   default_mapping={"customer_ref": "cust", "amount": "total", "currency": "=EUR",
                                    "type": "=purchase", "channel": "=web", "occurred_at": "at"}),
    ], **kw)


def setup(store: Any, adapter: MemoryAdapter, plugins: tuple = (), **config: Any) -> Any:
    return memory_setup(store, {"shop": adapter}, plugins=plugins,
                        config={"sync": {"lookback_seconds": 0}, **config}, now=lambda: NOW)


def rows(store: Any, query: Any) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(query))


def test_malformed_and_invalid_records_are_quarantined_while_the_rest_syncs(store: Any) -> None:
    a = crm()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T)
    a.put("customers", "2", {"__error__": "line 3: unterminated quote", "__raw__": '2,"Bob'}, modstamp=T)
    a.put("customers", "3", {"fn": "Cy", "email": "cy at example.com"}, modstamp=T)
    a.put("orders", "o1", {"cust": "1", "total": "abc", "at": "2024-05-01"}, modstamp=T)
    a.put("orders", "o2", {"cust": "1", "total": "9.90", "at": "2024-05-02"}, modstamp=T)
    eng = setup(store, a)
    runs = eng.run()
    assert [(r.status, r.records_read, r.records_quarantined) for r in runs] == [("succeeded", 3, 2),
                                                                                ("succeeded", 2, 1)]
    q = rows(store, select(s.quarantine.c.source_id, s.quarantine.c.reason, s.quarantine.c.status)
             .order_by(s.quarantine.c.id))
    assert [(r.source_id, r.status) for r in q] == [("2", "open"), ("3", "open"), ("o1", "open")]
    assert "unterminated quote" in q[0].reason
    assert "'email' -> emails" in q[1].reason
    assert "'total' -> amount" in q[2].reason
    assert sorted(r.source_id for r in rows(store, select(s.source_records.c.source_id))) == ["1", "o2"]
    # re-reading the same bad record does not pile up quarantine rows
    eng.run(full=True)
    assert len(rows(store, select(s.quarantine.c.id).where(s.quarantine.c.status == "open"))) == 3


class FixEmails:
    @hookimpl
    def prepare_records(self, source: str, stream: str, records: list[Any]) -> None:
        for r in records:
            if isinstance(r.fields.get("email"), str):
                r.fields["email"] = r.fields["email"].replace(" at ", "@")


def test_replay_after_fix_imports_quarantined_record(store: Any) -> None:
    a = crm()
    a.put("customers", "3", {"fn": "Cy", "email": "cy at example.com"}, modstamp=T)
    setup(store, a).run()
    (qid,) = [r.id for r in rows(store, select(s.quarantine.c.id))]
    report = setup(store, a, plugins=(FixEmails(),)).replay()
    assert report.replayed == [qid] and not report.still_failing
    assert rows(store, select(s.quarantine.c.status))[0].status == "replayed"
    (cust,) = rows(store, select(s.customers.c.primary_email))
    assert cust.primary_email == "cy@example.com"


def test_replay_that_still_fails_stays_open_with_new_reason(store: Any) -> None:
    a = crm()
    a.put("customers", "3", {"fn": "Cy", "email": "cy at example.com"}, modstamp=T)
    eng = setup(store, a)
    eng.run()
    report = eng.replay()
    assert list(report.still_failing) and not report.replayed
    assert rows(store, select(s.quarantine.c.status))[0].status == "open"


class Exploding:
    @hookimpl
    def customers_changed(self, context: Any, customer_ids: list[str]) -> None:
        raise RuntimeError("boom")


class Tiering:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def customers_changed(self, context: Any, customer_ids: list[str]) -> None:
        self.calls += 1
        for c in context.get_customers(customer_ids):
            context.set_traits(c.id, {"test.tier": "gold" if c.first_name == "Ann" else "silver",
                                      "test.vip": c.first_name == "Ann", "test.n": len(c.emails)},
                               producer="tiering")
            context.emit_event("test.scored", c.id, {"tier": "gold"})


class EventSink:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def events_emitted(self, context: Any, events: list[Any]) -> None:
        self.events.extend(events)


def test_raising_plugin_is_isolated_and_traits_of_others_apply(store: Any) -> None:
    a = crm()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T)
    a.put("customers", "2", {"fn": "Bob", "email": "bob@example.com"}, modstamp=T)
    tiering, sink = Tiering(), EventSink()
    eng = setup(store, a, plugins=(Exploding(), tiering, sink))
    runs = eng.run()
    assert all(r.status == "succeeded" for r in runs)
    failures = rows(store, select(s.plugin_failures.c.hook, s.plugin_failures.c.error, s.plugin_failures.c.run_id))
    assert [(f.hook, f.error) for f in failures] == [("customers_changed", "RuntimeError: boom")]
    assert failures[0].run_id == runs[0].id
    traits = {(r.name, r.type): r.value for r in rows(store, select(s.traits))}
    assert traits[("test.tier", "string")] in ("gold", "silver")
    assert {k[1] for k in traits} == {"string", "boolean", "integer"}
    assert len(sink.events) == 2 and sink.events[0]["name"] == "test.scored"
    history = rows(store, select(func.count()).select_from(s.trait_history))[0][0]
    assert history == 6
    # an unrelated change to Bob: traits recomputed to the same values -> no history, no rewrite
    a.update("customers", "2", {"note": "x"}, modstamp=T + timedelta(minutes=1))
    eng.run()
    assert rows(store, select(func.count()).select_from(s.trait_history))[0][0] == 6
    assert tiering.calls >= 2


def test_failing_stream_does_not_stop_the_others(store: Any) -> None:
    a = crm()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T)
    a.put("orders", "o1", {"cust": "1", "total": "5", "at": "2024-05-01"}, modstamp=T)
    a.fail[("customers", 0)] = ConnectionError("CRM unreachable")
    runs = setup(store, a).run()
    assert [(r.stream, r.status) for r in runs] == [("customers", "failed"), ("orders", "succeeded")]
    assert "CRM unreachable" in (runs[0].error or "")
    stored = rows(store, select(s.sync_runs.c.stream, s.sync_runs.c.status, s.sync_runs.c.error))
    assert {(r.stream, r.status) for r in stored} == {("customers", "failed"), ("orders", "succeeded")}


def test_interactions_link_to_golden_ids_and_orphans_are_adopted(store: Any) -> None:
    a = crm()
    a.put("orders", "o1", {"cust": "1", "total": "12.50", "at": "2024-05-01T10:00:00Z"}, modstamp=T)
    eng = setup(store, a)
    eng.run()
    (orphan,) = rows(store, select(s.interactions))
    assert orphan.customer_id is None and orphan.amount == 12.5
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T + timedelta(minutes=1))
    eng.run()
    (cust,) = rows(store, select(s.customers.c.id))
    (linked,) = rows(store, select(s.interactions))
    assert linked.customer_id == cust.id
    ctx = StoreContext(store, eng.config, eng.pm, now=NOW)
    (i,) = ctx.get_interactions([cust.id], types=["purchase"])[cust.id]
    assert (i.type.value, str(i.amount), i.currency, i.channel.value) == ("purchase", "12.5000", "EUR", "web")
    assert ctx.get_interactions([cust.id], types=["call"])[cust.id] == []
    a.delete("orders", "o1", modstamp=T + timedelta(minutes=2))
    eng.run()
    assert rows(store, select(s.interactions.c.deleted))[0].deleted is True
    assert ctx.get_interactions([cust.id])[cust.id] == []


class RejectBob:
    @hookimpl
    def prepare_records(self, source: str, stream: str, records: list[Any]) -> None:
        for r in records:
            if r.fields.get("fn") == "Bob":
                raise RecordError("Bob is a test record", source_id=r.source_id)


def test_prepare_records_record_error_quarantines_only_that_record(store: Any) -> None:
    a = crm()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T)
    a.put("customers", "2", {"fn": "Bob", "email": "bob@example.com"}, modstamp=T)
    setup(store, a, plugins=(RejectBob(),)).run(["shop"])
    assert [r.primary_email for r in rows(store, select(s.customers.c.primary_email))] == ["ann@example.com"]
    (q,) = rows(store, select(s.quarantine.c.source_id, s.quarantine.c.reason))
    assert q.source_id == "2" and "test record" in q.reason


def test_full_sync_reconciles_deletes_of_streams_without_delete_support(store: Any) -> None:
    a = MemoryAdapter("shop", [StreamInfo("customers", "customers", "customer", supports_deletes=False,
                                          default_mapping={"emails": "email"})])
    a.put("customers", "1", {"email": "ann@example.com"}, modstamp=T)
    a.put("customers", "2", {"email": "bob@example.com"}, modstamp=T)
    eng = setup(store, a)
    eng.reconcile_interval = None  # only on --full
    eng.run()
    del a.data["customers"]["2"]  # hard-deleted in the CRM: no tombstone is ever reported
    eng.run()
    assert len(rows(store, select(s.customers.c.id))) == 2
    eng.run(full=True)
    assert [r.primary_email for r in rows(store, select(s.customers.c.primary_email))] == ["ann@example.com"]
    mirror = dict(rows(store, select(s.source_records.c.source_id, s.source_records.c.deleted)))
    assert mirror == {"1": False, "2": True}


def test_store_context_outside_a_sync(store: Any) -> None:
    a = crm()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T)
    eng = setup(store, a)
    eng.run()
    ctx = StoreContext(store, eng.config, eng.pm, now=NOW)
    batches = list(ctx.iter_customers(batch_size=10))
    assert [c.first_name for b in batches for c in b] == ["Ann"]
    cid = batches[0][0].id
    ctx.set_traits(cid, {"test.score": 1.5}, producer="t")
    report = ctx.flush()
    assert report.traits_changed == {cid: ["test.score"]}
    (c,) = ctx.get_customers([cid])
    assert (c.traits["test.score"].value, c.traits["test.score"].type) == (1.5, "number")


class TierWriter:
    """Sets ``test.tier`` from the first name and counts the customers it was asked about."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def register_traits(self) -> list[Any]:
        from cxbridge.hooktypes import TraitInfo

        return [TraitInfo(name="test.tier")]

    @hookimpl
    def customers_changed(self, context: Any, customer_ids: list[str]) -> None:
        self.seen.extend(customer_ids)
        for c in context.get_customers(customer_ids):
            context.set_traits(c.id, {"test.tier": "gold" if c.first_name == "Ann" else "silver"}, producer="t")


def test_writeback_round_trip_does_not_ping_pong(store: Any) -> None:
    from cxbridge.outbox import deliver

    a = crm(clock=lambda: T + timedelta(hours=1))  # the CRM stamps our write an hour after the import
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T)
    plugin = TierWriter()
    eng = setup(store, a, plugins=(plugin,), writeback=[
        {"trait": "test.tier", "source": "shop", "object_type": "customers", "field": "cx_tier"}])
    eng.run()
    (pending,) = rows(store, select(s.outbox.c.fields, s.outbox.c.status))
    assert (pending.fields, pending.status) == ({"cx_tier": "gold"}, "pending")
    deliver(store, {"shop": a}, now=NOW, pm=eng.pm)
    assert a.live("customers")["1"]["cx_tier"] == "gold"
    plugin.seen.clear()
    (run, _orders) = eng.run()
    assert run.records_changed == 0  # our own write coming back is not a change...
    assert plugin.seen == []  # ...and triggers no recomputation
    with store.connect() as conn:  # ...but the mirror holds it, so the next read skips it by hash
        mirror = conn.execute(select(s.source_records.c.fields).where(s.source_records.c.source_id == "1")).one()
    assert mirror.fields["cx_tier"] == "gold"
    assert len(rows(store, select(s.outbox.c.id))) == 1


def test_erased_people_are_not_reimported(store: Any) -> None:
    from cxbridge.erasure import forget

    a = MemoryAdapter("shop", [StreamInfo("customers", "customers", "customer",
                                          default_mapping={"first_name": "fn", "emails": "email"})])
    a.capabilities = frozenset({"list_ids"})  # a CRM that cannot erase: the record stays there
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T)
    a.put("customers", "2", {"fn": "Bob", "email": "bob@example.com"}, modstamp=T)
    eng = setup(store, a)
    eng.run()
    forget(store, {"shop": a}, "ann@example.com", now=NOW)
    a.update("customers", "1", {"fn": "Ann again"}, modstamp=T + timedelta(minutes=1))  # touched in the CRM
    a.put("customers", "3", {"fn": "Ann", "email": "ANN@example.com"}, modstamp=T + timedelta(minutes=1))
    eng.run(full=True)
    emails = sorted(r.primary_email for r in rows(store, select(s.customers.c.primary_email)))
    assert emails == ["bob@example.com"]
    mirror = {r.source_id for r in rows(store, select(s.source_records.c.source_id))}
    assert "3" not in mirror and "1" not in mirror


def test_organizations_are_linked_from_customers(store: Any) -> None:
    a = MemoryAdapter("shop", [
        StreamInfo("companies", "companies", "organization",
                   default_mapping={"name": "name", "domain": "web", "employees": "staff"}),
        StreamInfo("customers", "customers", "customer",
                   default_mapping={"first_name": "fn", "emails": "email", "organization_ref": "company"}),
    ])
    a.put("companies", "k1", {"name": "ACME GmbH", "web": "acme.example", "staff": "250"}, modstamp=T)
    a.put("customers", "1", {"fn": "Ann", "email": "ann@acme.example", "company": "k1"}, modstamp=T)
    eng = setup(store, a)
    eng.run()
    (org,) = rows(store, select(s.organizations))
    assert (org.name, org.domain, org.data["employees"]) == ("ACME GmbH", "acme.example", 250)
    (cust,) = rows(store, select(s.customers.c.organization_id))
    assert cust.organization_id == org.id
    a.delete("companies", "k1", modstamp=T + timedelta(minutes=1))
    eng.run()
    assert rows(store, select(s.organizations)) == []


def test_sync_ids_applies_targeted_reads_without_moving_the_cursor(store: Any) -> None:
    a = crm()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T)
    a.put("customers", "2", {"fn": "Bob", "email": "bob@example.com"}, modstamp=T)
    eng = setup(store, a)
    eng.run()
    with store.connect() as conn:
        before = conn.execute(select(s.cursors.c.cursor).where(s.cursors.c.stream == "customers")).scalar_one()
    a.update("customers", "1", {"fn": "Anna"}, modstamp=T + timedelta(minutes=1))
    del a.data["customers"]["2"]  # gone: the targeted read returns a tombstone
    outcome = eng.sync_ids("shop", "customers", ["1", "2"])
    assert (outcome.read, outcome.changed) == (2, 2)
    assert [r.display_name for r in rows(store, select(s.customers.c.display_name))] == ["Anna"]
    with store.connect() as conn:
        after = conn.execute(select(s.cursors.c.cursor).where(s.cursors.c.stream == "customers")).scalar_one()
    assert after == before
    one = eng.run_one("shop", "customers")
    assert one.status == "succeeded" and one.records_changed == 0


def test_record_fixed_in_the_source_resolves_its_quarantine_row(store: Any) -> None:
    a = crm()
    a.put("customers", "3", {"fn": "Cy", "email": "cy at example.com"}, modstamp=T)
    eng = setup(store, a)
    eng.run()
    assert rows(store, select(s.quarantine.c.status))[0].status == "open"
    a.update("customers", "3", {"email": "cy@example.com"}, modstamp=T + timedelta(minutes=1))
    eng.run()
    assert rows(store, select(s.quarantine.c.status))[0].status == "resolved"
    assert [r.primary_email for r in rows(store, select(s.customers.c.primary_email))] == ["cy@example.com"]


def test_periodic_reconciliation_of_hard_deletes(store: Any) -> None:
    a = MemoryAdapter("shop", [StreamInfo("customers", "customers", "customer", supports_deletes=False,
                                          default_mapping={"emails": "email"})])
    for i in range(3):
        a.put("customers", str(i), {"email": f"p{i}@example.com"}, modstamp=T)
    clock = [NOW]
    eng = memory_setup(store, {"shop": a}, config={"sync": {"lookback_seconds": 0}}, now=lambda: clock[0])
    eng.run()  # an initial load: the reconciliation clock starts
    del a.data["customers"]["0"]
    clock[0] = NOW + timedelta(hours=1)
    eng.run()  # not due yet
    assert len(rows(store, select(s.customers.c.id))) == 3
    clock[0] = NOW + timedelta(hours=25)
    eng.run()  # due: the hard delete is found
    assert sorted(r.primary_email for r in rows(store, select(s.customers.c.primary_email))) == [
        "p1@example.com", "p2@example.com"]
