"""Identity resolution v1 on both stores: email/phone/cross-id linking, merges with aliases, tombstones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from cxbridge import hookimpl
from cxbridge.adapters import StreamInfo
from cxbridge.golden import load_customers
from cxbridge.hooktypes import IdentityDecision
from cxbridge.identity.resolver import key_owners
from cxbridge.store import schema as s
from cxbridge.testing.memory import MemoryAdapter, memory_setup

T0 = datetime(2024, 3, 1, tzinfo=UTC)
CUSTOMER_MAP = {"first_name": "fn", "last_name": "ln", "emails": ["email", "email2"], "phones": "phone",
                "external_ids.erp_no": "erp"}


def shop() -> MemoryAdapter:
    return MemoryAdapter("shop", [
        StreamInfo("customers", "customers", "customer", default_mapping=CUSTOMER_MAP),
        StreamInfo("orders", "orders", "interaction", customer_object="customers",
                   default_mapping={"customer_ref": "cust", "amount": "total", "currency": "=EUR",
                                    "type": "=purchase", "occurred_at": "at"}),
    ])


def callcentre() -> MemoryAdapter:
    return MemoryAdapter("cc", [StreamInfo("contacts", "contacts", "customer", default_mapping={
        "full_name": "name", "emails": "mail", "phones": "tel", "external_ids.erp_no": "kdnr"})])


def engine(store: Any, adapters: dict[str, MemoryAdapter], plugins: tuple = ()) -> Any:
    return memory_setup(store, adapters, plugins=plugins, config={
        "identity": {"default_region": "DE", "cross_ids": ["erp_no"],
                     "source_priority": [n for n in ("shop", "cc") if n in adapters]},
        "sync": {"lookback_seconds": 0},
    })


def golden(store: Any) -> list[Any]:
    with store.connect() as conn:
        ids = [r[0] for r in conn.execute(select(s.customers.c.id).order_by(s.customers.c.id))]
        return load_customers(conn, ids)


def test_same_person_in_two_sources_links_on_email_case_and_phone_format(store: Any) -> None:
    a, b = shop(), callcentre()
    a.put("customers", "1", {"fn": "Ann", "ln": "Lee", "email": "Ann.Lee@Example.com", "phone": "030 1234567"},
          modstamp=T0)
    a.put("customers", "2", {"fn": "Bob", "email": "bob@example.com"}, modstamp=T0)
    b.put("contacts", "c7", {"name": "Ann Lee", "mail": "ann.lee@example.COM ", "tel": "+49 (30) 123-4567"},
          modstamp=T0)
    b.put("contacts", "c8", {"name": "Cleo", "tel": "0049 30 1234567"}, modstamp=T0)  # same phone as Ann
    results = engine(store, {"shop": a, "cc": b}).run()
    assert [r.status for r in results] == ["succeeded"] * 3
    people = golden(store)
    assert len(people) == 2
    ann = next(c for c in people if c.first_name == "Ann")
    assert {(lk.source, lk.source_id) for lk in ann.links} == {("shop", "1"), ("cc", "c7"), ("cc", "c8")}
    assert ann.emails == ["ann.lee@example.com"]
    assert ann.phones == ["+49301234567"]
    assert (ann.first_name, ann.last_name, ann.full_name) == ("Ann", "Lee", "Ann Lee")  # full name agrees: kept
    assert ann.provenance["full_name"].source == "cc"
    assert ann.provenance["first_name"].source == "shop"


def test_cross_system_id_links_records_without_shared_contact_data(store: Any) -> None:
    a, b = shop(), callcentre()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@shop.example", "erp": "K-4711"}, modstamp=T0)
    b.put("contacts", "c1", {"name": "A. Lee", "mail": "ann@cc.example", "kdnr": "K-4711"}, modstamp=T0)
    engine(store, {"shop": a, "cc": b}).run()
    (ann,) = golden(store)
    assert ann.external_ids == {"erp_no": "K-4711"}
    assert ann.emails == ["ann@shop.example", "ann@cc.example"]
    with store.connect() as conn:
        rules = dict(conn.execute(select(s.source_links.c.source_id, s.source_links.c.rule)).all())
    assert rules == {"1": "new", "c1": "xid:erp_no"}


class MergeRecorder:
    def __init__(self) -> None:
        self.merges: list[tuple[str, list[str]]] = []
        self.changed: list[str] = []

    @hookimpl
    def customers_merged(self, context: Any, survivor_id: str, merged_ids: list[str]) -> None:
        self.merges.append((survivor_id, list(merged_ids)))

    @hookimpl
    def customers_changed(self, context: Any, customer_ids: list[str]) -> None:
        self.changed.extend(customer_ids)


def test_bridging_record_merges_two_customers_into_the_oldest_with_alias(store: Any) -> None:
    a, b = shop(), callcentre()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T0)
    b.put("contacts", "c1", {"name": "Ann Lee", "tel": "+49301234567"}, modstamp=T0)
    recorder = MergeRecorder()
    eng = engine(store, {"shop": a, "cc": b}, plugins=(recorder,))
    eng.run()
    first = {c.links[0].source: c.id for c in golden(store)}
    assert len(first) == 2
    survivor, merged = min(first.values()), max(first.values())
    # the shop learns Ann's phone: now one record bridges both golden customers
    a.update("customers", "1", {"phone": "030 1234567"}, modstamp=T0 + timedelta(minutes=1))
    eng.run(["shop"])
    (ann,) = golden(store)
    assert ann.id == survivor
    assert ann.aliases == [merged]
    assert {lk.source_id for lk in ann.links} == {"1", "c1"}
    assert recorder.merges == [(survivor, [merged])]
    with store.connect() as conn:
        assert [c.id for c in load_customers(conn, [merged])] == [survivor]  # aliases resolve
        keys = [r[0] for r in conn.execute(select(s.identity_keys.c.key))]
        owners = {cid for _key, cid in key_owners(conn, keys)}
        reason = conn.execute(select(s.customer_aliases.c.reason)).scalar_one()
    assert owners == {survivor}
    assert reason.startswith("identity:")


def test_crm_merge_keeps_survivor_golden_id_and_aliases_the_other(store: Any) -> None:
    a = shop()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T0)
    a.put("customers", "2", {"fn": "Annie", "email": "annie@example.com"}, modstamp=T0)
    a.put("orders", "o1", {"cust": "2", "total": "10", "at": "2024-02-01T00:00:00Z"}, modstamp=T0)
    eng = engine(store, {"shop": a})
    eng.run()
    ids = {c.links[0].source_id: c.id for c in golden(store)}
    a.merge("customers", "2", "1", modstamp=T0 + timedelta(minutes=5))
    eng.run()
    (ann,) = golden(store)
    assert ann.id == ids["1"]
    assert ann.aliases == [ids["2"]]
    assert [lk.source_id for lk in ann.links] == ["1"]
    with store.connect() as conn:
        owner = conn.execute(select(s.interactions.c.customer_id)).scalar_one()
        mirror = conn.execute(select(s.source_records.c.deleted, s.source_records.c.merged_into)
                              .where(s.source_records.c.source_id == "2")).one()
        reason = conn.execute(select(s.customer_aliases.c.reason)).scalar_one()
    assert owner == ann.id  # the merged record's orders follow the survivor
    assert tuple(mirror) == (True, "1")
    assert reason == "crm-merge:shop"


def test_alias_chains_collapse_to_the_final_survivor(store: Any) -> None:
    a = shop()
    for i in (1, 2, 3):
        a.put("customers", str(i), {"fn": f"P{i}", "email": f"p{i}@example.com"}, modstamp=T0)
    eng = engine(store, {"shop": a})
    eng.run()
    ids = {c.links[0].source_id: c.id for c in golden(store)}
    a.merge("customers", "3", "2", modstamp=T0 + timedelta(minutes=1))
    eng.run()
    a.merge("customers", "2", "1", modstamp=T0 + timedelta(minutes=2))
    eng.run()
    with store.connect() as conn:
        aliases = dict(conn.execute(select(s.customer_aliases.c.alias_id, s.customer_aliases.c.customer_id)).all())
    assert aliases == {ids["3"]: ids["1"], ids["2"]: ids["1"]}


def test_tombstone_removes_link_and_golden_record_without_links(store: Any) -> None:
    a, b = shop(), callcentre()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T0)
    a.put("customers", "2", {"fn": "Bob", "email": "bob@example.com"}, modstamp=T0)
    a.put("orders", "o2", {"cust": "2", "total": "5", "at": "2024-02-01T00:00:00Z"}, modstamp=T0)
    b.put("contacts", "c1", {"name": "Ann Lee", "mail": "ann@example.com"}, modstamp=T0)
    eng = engine(store, {"shop": a, "cc": b})
    eng.run()
    a.delete("customers", "1", modstamp=T0 + timedelta(minutes=1))
    a.delete("customers", "2", modstamp=T0 + timedelta(minutes=1))
    eng.run(["shop"])
    (ann,) = golden(store)
    assert [lk.source for lk in ann.links] == ["cc"]
    assert ann.first_name is None and ann.full_name == "Ann Lee"  # recomputed from what is left
    with store.connect() as conn:
        orphan = conn.execute(select(s.interactions.c.customer_id)).scalar_one()
        keys = {r[0] for r in conn.execute(select(s.identity_keys.c.key))}
    assert orphan is None
    assert keys == {"email:ann@example.com"}


class NeverLink:
    @hookimpl
    def resolve_identity(self, candidate: Any, matches: Any) -> IdentityDecision:
        return IdentityDecision(action="new", rule="never")


def test_resolve_identity_plugin_overrides_the_default(store: Any) -> None:
    a, b = shop(), callcentre()
    a.put("customers", "1", {"fn": "Ann", "email": "ann@example.com"}, modstamp=T0)
    b.put("contacts", "c1", {"name": "Ann Lee", "mail": "ann@example.com"}, modstamp=T0)
    engine(store, {"shop": a, "cc": b}, plugins=(NeverLink(),)).run()
    assert len(golden(store)) == 2


def test_concurrent_page_transactions_do_not_duplicate_a_new_person(store: Any) -> None:
    """Two sources sync the same new person in parallel threads: one golden customer, not two."""
    import threading

    a, b = shop(), callcentre()
    for i in range(200):
        a.put("customers", str(i), {"fn": f"P{i}", "email": f"p{i}@example.com"}, modstamp=T0)
        b.put("contacts", f"c{i}", {"name": f"P {i}", "mail": f"P{i}@example.com"}, modstamp=T0)
    a.page_size = b.page_size = 20
    eng = engine(store, {"shop": a, "cc": b})
    plans = {p.source: p for p in eng.plan() if p.stream.entity == "customer"}
    errors: list[BaseException] = []

    def run(source: str) -> None:
        try:
            eng.run_stream(plans[source])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("shop", "cc")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with store.connect() as conn:
        customers = conn.execute(select(s.customers.c.id)).all()
        links = conn.execute(select(s.source_links.c.customer_id)).all()
    assert len(customers) == 200
    assert len(links) == 400


def test_customers_are_the_connected_components_of_shared_keys(store: Any) -> None:
    """Records inserted over several runs, in pages of varying sizes, by two sources: after every run each golden
    customer is exactly one connected component of the records' shared emails, phones and cross-system ids
    (records alone, records sharing keys within a page, with stored records, and records that bridge
    customers), each record is linked once, every key is stored once per record, no key names two customers
    and every id ever handed out resolves to its customer."""
    import random

    rnd = random.Random(11)
    a, b = shop(), callcentre()
    a.page_size, b.page_size = 7, 5
    eng = engine(store, {"shop": a, "cc": b})
    records: dict[tuple[str, str], set[str]] = {}  # (source, id) -> keys
    seen_ids: set[str] = set()
    for run in range(5):
        for i in range(40):
            n = run * 40 + i
            email = f"p{rnd.randrange(70)}@x.test" if rnd.random() < 0.7 else None
            if i % 6 in (1, 2):  # pairs of records with an email nobody had: new people, twice in one page
                email = f"new{n - i % 6 + 1}@x.test"
            phone = f"030 {1000 + rnd.randrange(60)}" if rnd.random() < 0.4 else None
            erp = f"K{rnd.randrange(40)}" if rnd.random() < 0.3 else None
            keys = {f"email:{email}"} if email else set()
            keys |= {"phone:+4930" + phone[4:]} if phone else set()
            keys |= {f"xid:erp_no:{erp}"} if erp else set()
            named = (f"N{n}", email, phone, erp)
            if n % 3:
                fields = {k: v for k, v in zip(("fn", "email", "phone", "erp"), named, strict=True) if v}
                a.put("customers", f"s{n}", fields, modstamp=T0 + timedelta(minutes=n))
                records[("shop", f"s{n}")] = keys
            else:
                fields = {k: v for k, v in zip(("name", "mail", "tel", "kdnr"), named, strict=True) if v}
                b.put("contacts", f"c{n}", fields, modstamp=T0 + timedelta(minutes=n))
                records[("cc", f"c{n}")] = keys
        assert all(r.status == "succeeded" for r in eng.run())
        customers = golden(store)
        seen_ids |= {c.id for c in customers}
        assert {frozenset((lk.source, lk.source_id) for lk in c.links) for c in customers} == _components(records)
        assert sum(len(c.links) for c in customers) == len(records)
        with store.connect() as conn:
            ik = s.identity_keys
            rows = conn.execute(select(ik.c.key, ik.c.source, ik.c.source_id)).all()
            assert sorted(rows) == sorted((k, src, sid) for (src, sid), keys in records.items() for k in keys)
            owners: dict[str, set[str]] = {}
            for key, cid in key_owners(conn, sorted({k for keys in records.values() for k in keys})):
                owners.setdefault(key, set()).add(cid)
            assert all(len(ids) == 1 for ids in owners.values())
            # every id ever handed out is a customer or an alias of one
            assert {c.id for c in load_customers(conn, sorted(seen_ids))} == {c.id for c in customers}
        for c in customers:  # the golden record holds every email of its records
            mine = {(lk.source, lk.source_id) for lk in c.links}
            assert set(c.emails) == {k[6:] for rec in mine for k in records[rec] if k.startswith("email:")}


def _components(records: dict[tuple[str, str], set[str]]) -> set[frozenset[tuple[str, str]]]:
    """Records grouped by shared keys, transitively (union-find)."""
    parent = {r: r for r in records}

    def root(r: tuple[str, str]) -> tuple[str, str]:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    by_key: dict[str, tuple[str, str]] = {}
    for rec, keys in records.items():
        for key in keys:
            if key in by_key:
                parent[root(rec)] = root(by_key[key])
            else:
                by_key[key] = rec
    groups: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for rec in records:
        groups.setdefault(root(rec), set()).add(rec)
    return {frozenset(g) for g in groups.values()}
