"""The Python API (Bridge), the 360° view, search and export on both stores, over data synced by the engine."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cxbridge import hookimpl
from cxbridge.adapters import StreamInfo
from cxbridge.bridge import Bridge
from cxbridge.errors import ConfigError, NotFound
from cxbridge.hooktypes import TraitInfo
from cxbridge.outbox import deliver
from cxbridge.store import schema as s
from cxbridge.testing.memory import MemoryAdapter, memory_setup

T0 = datetime(2024, 3, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
IDENTITY = {"default_region": "DE", "cross_ids": ["erp_no"], "source_priority": ["shop", "cc"]}
WRITEBACK = [{"trait": "test.tier", "source": "shop", "object_type": "customers", "field": "cx_tier"}]


def shop() -> MemoryAdapter:
    return MemoryAdapter("shop", [
        StreamInfo("customers", "customers", "customer", default_mapping={
            "first_name": "fn", "last_name": "ln", "emails": "email", "phones": "phone",
            "external_ids.erp_no": "erp", "custom.tier": "cx_tier"}),
        StreamInfo("orders", "orders", "interaction", customer_object="customers", default_mapping={
            "customer_ref": "cust", "amount": "total", "currency": "=EUR", "type": "=purchase",
            "channel": "=web", "occurred_at": "at"}),
    ], clock=lambda: T0 + timedelta(days=30))


def callcentre() -> MemoryAdapter:
    return MemoryAdapter("cc", [
        StreamInfo("contacts", "contacts", "customer", default_mapping={
            "full_name": "name", "emails": "mail", "phones": "tel", "external_ids.erp_no": "kdnr",
            "consent.phone_opt_out": "dnc"}),
        StreamInfo("calls", "calls", "interaction", customer_object="contacts", default_mapping={
            "customer_ref": "contact", "occurred_at": "at", "type": "=call", "channel": "=phone",
            "subject": "topic"}),
    ])


class TierWriter:
    """Sets ``test.tier`` for every changed customer (gold for Ann, silver otherwise)."""

    @hookimpl
    def register_traits(self) -> list[Any]:
        return [TraitInfo(name="test.tier")]

    @hookimpl
    def customers_changed(self, context: Any, customer_ids: list[str]) -> None:
        for c in context.get_customers(customer_ids):
            tier = "gold" if c.first_name == "Ann" else "silver"
            context.set_traits(c.id, {"test.tier": tier}, producer="t")
            context.emit_event("test.scored", c.id, {"tier": tier})


@dataclass
class Scenario:
    store: Any
    engine: Any
    bridge: Bridge
    shop: MemoryAdapter
    cc: MemoryAdapter
    ann: str
    bob: str
    bob_alias: str
    cleo: str


def build(store: Any) -> Scenario:
    """Ann in both CRMs (email case + phone format differ), Bob in both (merged later through an ERP number),
    Cleo only in the shop; orders and calls; a write-back rule with pending writes."""
    a, b = shop(), callcentre()
    a.put("customers", "1", {"fn": "Ann", "ln": "Lee", "email": "Ann.Lee@Example.com", "phone": "030 1234567",
                             "erp": "K-1"}, modstamp=T0)
    a.put("customers", "2", {"fn": "Bob", "ln": "Stone", "email": "bob@example.com", "erp": "K-2"}, modstamp=T0)
    a.put("customers", "3", {"fn": "Cleo", "ln": "Park", "email": "cleo@example.org"}, modstamp=T0)
    a.put("orders", "o1", {"cust": "1", "total": "10.50", "at": "2024-05-01T10:00:00Z"}, modstamp=T0)
    a.put("orders", "o2", {"cust": "1", "total": "-3.00", "at": "2024-05-03T10:00:00Z"}, modstamp=T0)
    a.put("orders", "o3", {"cust": "2", "total": "99", "at": "2024-04-01T10:00:00Z"}, modstamp=T0)
    b.put("contacts", "c1", {"name": "Ann Lee", "mail": " ANN.LEE@example.com ", "tel": "+49 (30) 123-4567",
                             "dnc": True}, modstamp=T0)
    b.put("contacts", "c2", {"name": "Robert Stone", "mail": "rob@mail.example"}, modstamp=T0)
    b.put("calls", "k1", {"contact": "c1", "at": "2024-05-02T09:00:00Z", "topic": "delivery"}, modstamp=T0)
    b.put("calls", "k2", {"contact": "c2", "at": "2024-03-01T09:00:00Z", "topic": "invoice"}, modstamp=T0)
    eng = memory_setup(store, {"shop": a, "cc": b}, plugins=(TierWriter(),), now=lambda: NOW, config={
        "identity": IDENTITY, "sync": {"lookback_seconds": 0}, "writeback": WRITEBACK})
    runs = eng.run()
    assert [r.status for r in runs] == ["succeeded"] * 4
    bridge = Bridge(eng.config, store, eng.pm)
    bob_alias = bridge.find_customer_id("cc/c2")
    bob_before = bridge.find_customer_id("shop/2")
    assert bob_alias != bob_before
    # the call centre learns Robert's ERP number: his record now bridges to the shop's Bob -> a merge
    b.update("contacts", "c2", {"kdnr": "K-2"}, modstamp=T0 + timedelta(minutes=5))
    eng.run(["cc"])
    bob = bridge.find_customer_id("shop/2")
    assert bridge.find_customer_id("cc/c2") == bob
    merged = bob_alias if bob == bob_before else bob_before
    return Scenario(store, eng, bridge, a, b, bridge.find_customer_id("shop/1"), bob, merged,
                    bridge.find_customer_id("shop/3"))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """One scenario per store backend for the read-only tests of this module (built once: it is slow-ish)."""
    from cxbridge.testing.stores import _Stores

    stores = _Stores(tmp_path_factory.mktemp("bridge"))
    try:
        yield build(stores(request.param))
    finally:
        stores.cleanup()


# ------------------------------------------------------------------------------------------- find_customer_id


def test_find_customer_by_id_alias_email_phone_and_source_id(sc: Scenario) -> None:
    br = sc.bridge
    assert len({sc.ann, sc.bob, sc.cleo}) == 3
    assert br.find_customer_id(sc.ann) == sc.ann
    assert br.find_customer_id(f"  {sc.ann} ") == sc.ann
    assert br.find_customer_id(sc.bob_alias) == sc.bob  # an id merged away resolves to the survivor
    for ref in ("ann.lee@example.com", "ANN.LEE@EXAMPLE.COM", " Ann.Lee@example.com "):
        assert br.find_customer_id(ref) == sc.ann
    assert br.find_customer_id("rob@mail.example") == sc.bob  # an email only the merged record had
    for ref in ("030 1234567", "030/1234567", "(030) 123 45 67", "+49 30 1234567", "0049301234567",
                "+49301234567"):
        assert br.find_customer_id(ref) == sc.ann, ref
    assert br.find_customer_id("shop/1") == sc.ann
    assert br.find_customer_id("cc/c1") == sc.ann
    assert br.find_customer_id("shop/3") == sc.cleo


@pytest.mark.parametrize("ref", ["nobody@example.com", "030 7654321", "shop/999", "nope/1", "cus_missing",
                                 "", "not an email@"])
def test_not_found_is_one_clear_message(sc: Scenario, ref: str) -> None:
    with pytest.raises(NotFound) as err:
        sc.bridge.find_customer_id(ref)
    message = str(err.value)
    assert "\n" not in message
    assert repr(ref.strip()) in message
    assert "email" in message and "source/source_id" in message
    with pytest.raises(NotFound):
        sc.bridge.customer(ref)


# ------------------------------------------------------------------------------------------------ 360 view


def test_customer_360_identities_attributes_provenance_and_consent(sc: Scenario) -> None:
    view = sc.bridge.customer("ann.lee@example.com")
    c = view.customer
    assert c.id == sc.ann
    assert [(i.source, i.object_type, i.source_id) for i in view.identities] == [
        ("cc", "contacts", "c1"), ("shop", "customers", "1")]
    by_source = {i.source: i for i in view.identities}
    assert by_source["shop"].rule == "new"
    assert by_source["cc"].rule in ("email", "phone", "xid:erp_no")
    assert by_source["shop"].fields["fn"] == "Ann"  # the raw CRM fields as last seen
    assert by_source["cc"].fields["tel"] == "+49 (30) 123-4567"
    assert by_source["shop"].modstamp is not None and not by_source["shop"].deleted
    assert (c.first_name, c.last_name, c.full_name) == ("Ann", "Lee", "Ann Lee")
    assert c.emails == ["ann.lee@example.com"] and c.phones == ["+49301234567"]
    assert c.external_ids == {"erp_no": "K-1"}
    assert c.provenance["first_name"].source == "shop"
    assert (c.provenance["full_name"].source, c.provenance["full_name"].source_id) == ("cc", "c1")
    assert c.consent.phone_opt_out is True  # sticky opt-out from the call centre
    assert c.trait("test.tier") == "gold"
    assert view.events and {e["name"] for e in view.events} == {"test.scored"}
    assert all(e["payload"] == {"tier": "gold"} for e in view.events)
    assert [e["at"] for e in view.events] == sorted((e["at"] for e in view.events), reverse=True)


def test_customer_360_timeline_is_newest_first_across_sources(sc: Scenario) -> None:
    view = sc.bridge.customer("shop/1")
    assert [(i.source, i.source_id) for i in view.interactions] == [("shop", "o2"), ("cc", "k1"), ("shop", "o1")]
    assert [str(i.amount) for i in view.interactions if i.source == "shop"] == ["-3.0000", "10.5000"]
    assert view.interactions[1].subject == "delivery"
    assert [i.source_id for i in sc.bridge.customer("shop/1", interactions=2).interactions] == ["o2", "k1"]
    # the merged customer's timeline holds the interactions of both records
    bob = sc.bridge.customer(sc.bob_alias)
    assert bob.customer.id == sc.bob
    assert sorted(i.source_id for i in bob.interactions) == ["k2", "o3"]
    assert bob.customer.aliases == [sc.bob_alias]
    assert {(i.source, i.source_id) for i in bob.identities} == {("shop", "2"), ("cc", "c2")}


def test_customer_360_open_writes_count_pending_write_backs(store: Any) -> None:
    sc = build(store)  # delivers: needs its own store
    assert sc.bridge.customer(sc.ann).open_writes == 1
    assert sc.bridge.customer(sc.cleo).open_writes == 1
    report = deliver(sc.store, {"shop": sc.shop}, now=NOW, pm=sc.engine.pm)
    assert report is not None
    assert sc.shop.live("customers")["1"]["cx_tier"] == "gold"
    assert sc.bridge.customer(sc.ann).open_writes == 0


def test_display_name_follows_source_priority(sc: Scenario) -> None:
    bob = sc.bridge.customer("shop/2").customer
    assert (bob.first_name, bob.last_name) == ("Bob", "Stone")
    assert bob.display_name == "Bob Stone"


def test_search_customers_by_name_email_and_phone(sc: Scenario) -> None:
    br = sc.bridge
    assert [c.id for c in br.search_customers("ann")] == [sc.ann]
    assert [c.id for c in br.search_customers("  STONE ")] == [sc.bob]
    assert [c.id for c in br.search_customers("example.org")] == [sc.cleo]
    assert [c.id for c in br.search_customers("1234567")] == [sc.ann]
    assert {c.id for c in br.search_customers("e")} == {sc.ann, sc.bob, sc.cleo}
    assert len(br.search_customers("e", limit=2)) == 2
    assert br.search_customers("zzz") == []
    assert [c.id for c in br.search_customers("rob@mail")] == [sc.bob]  # a secondary email (merged record)
    assert [c.id for c in br.search_customers("030 1234567")] == [sc.ann]  # national format -> E.164
    assert br.search_customers("%") == [] and br.search_customers("_") == []  # wildcards match literally
    assert br.search_customers("   ") == []
    found = br.search_customers("bob")[0]
    assert {lk.source for lk in found.links} == {"shop", "cc"}  # full customers, with links


def test_status_counts(sc: Scenario) -> None:
    st = sc.bridge.status()
    assert st["customers"] == 3
    assert st["customers_in_several_sources"] == 2
    assert st["aliases"] == 1
    assert st["links"] == {"cc/contacts": 2, "shop/customers": 3}
    assert st["interactions"] == 5
    assert st["quarantine_open"] == 0
    assert st["outbox"] == {"pending": 3}


# --------------------------------------------------------------------------------------------------- export


def _export(br: Bridge, kind: str, fmt: str, batch_size: int = 1000) -> tuple[int, str]:
    out = io.StringIO()
    n = br.export(kind, fmt, out, batch_size=batch_size)
    return n, out.getvalue()


def test_export_customers_jsonl_has_every_linked_source_id(sc: Scenario) -> None:
    n, text = _export(sc.bridge, "customers", "jsonl")
    rows = [json.loads(line) for line in text.splitlines()]
    assert n == len(rows) == 3
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {sc.ann, sc.bob, sc.cleo}
    assert sorted(by_id[sc.ann]["links"]) == ["cc:contacts:c1", "shop:customers:1"]
    assert sorted(by_id[sc.bob]["links"]) == ["cc:contacts:c2", "shop:customers:2"]
    assert by_id[sc.bob]["aliases"] == [sc.bob_alias]
    assert by_id[sc.ann]["emails"] == ["ann.lee@example.com"]
    assert by_id[sc.ann]["traits"] == {"test.tier": "gold"}
    assert by_id[sc.ann]["phone_opt_out"] is True
    linked = {lk for r in rows for lk in r["links"]}
    with sc.store.connect() as conn:
        mirror = {f"{r.source}:{r.object_type}:{r.source_id}" for r in conn.execute(
            select(s.source_records).where(s.source_records.c.object_type.in_(["customers", "contacts"])))}
    assert linked == mirror  # every synced customer record appears, once


def test_export_customers_csv_round_trips(sc: Scenario) -> None:
    n, text = _export(sc.bridge, "customers", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert n == len(rows) == 3
    ann = next(r for r in rows if r["id"] == sc.ann)
    assert set(ann["links"].split(";")) == {"cc:contacts:c1", "shop:customers:1"}
    assert json.loads(ann["external_ids"]) == {"erp_no": "K-1"}
    assert json.loads(ann["traits"]) == {"test.tier": "gold"}
    assert ann["phones"] == "+49301234567"
    assert ann["phone_opt_out"] == "True" and ann["email_opt_out"] == "False"
    cleo = next(r for r in rows if r["id"] == sc.cleo)
    assert cleo["aliases"] == "" and cleo["organization_id"] == ""


def test_export_interactions_and_links(sc: Scenario) -> None:
    n, text = _export(sc.bridge, "interactions", "jsonl")
    rows = [json.loads(line) for line in text.splitlines()]
    assert n == 5
    owner = {(r["source"], r["source_id"]): r["customer_id"] for r in rows}
    assert owner == {("shop", "o1"): sc.ann, ("shop", "o2"): sc.ann, ("cc", "k1"): sc.ann,
                     ("shop", "o3"): sc.bob, ("cc", "k2"): sc.bob}
    n, text = _export(sc.bridge, "links", "csv")
    links = list(csv.DictReader(io.StringIO(text)))
    assert n == len(links) == 5
    assert {(r["source"], r["source_id"]): r["customer_id"] for r in links} == {
        ("shop", "1"): sc.ann, ("cc", "c1"): sc.ann, ("shop", "2"): sc.bob, ("cc", "c2"): sc.bob,
        ("shop", "3"): sc.cleo}
    assert all(r["linked_at"] for r in links)


@pytest.mark.parametrize("kind", ["customers", "interactions", "links"])
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_streams_in_batches_with_the_same_result(sc: Scenario, kind: str, fmt: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import cxbridge.export as export_mod

    n_all, whole = _export(sc.bridge, kind, fmt)
    batches: list[int] = []
    real = export_mod.load_customers

    def spy(conn: Any, ids: Any, **kw: Any) -> Any:
        batches.append(len(ids))
        return real(conn, ids, **kw)

    monkeypatch.setattr(export_mod, "load_customers", spy)
    n, paged = _export(sc.bridge, kind, fmt, batch_size=2)
    assert (n, paged) == (n_all, whole)
    if kind == "customers":
        assert batches == [2, 1]


def test_export_is_lazy(sc: Scenario) -> None:
    """The first rows are written before later batches are read (memory flat in the number of rows)."""
    from cxbridge.export import _rows

    with sc.store.connect() as conn:
        _cols, rows = _rows(conn, "interactions", 1)
        assert isinstance(rows, Iterator)
        first = next(rows)
        assert first["source_id"]


@pytest.mark.parametrize(("kind", "fmt", "needle"), [
    ("orders", "jsonl", "customers, interactions, links"),
    ("customers", "xml", "jsonl, csv"),
])
def test_export_unknown_kind_or_format(sc: Scenario, kind: str, fmt: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        sc.bridge.export(kind, fmt, io.StringIO())
    assert needle in str(err.value)
    assert repr(kind if "orders" == kind else fmt) in str(err.value)


# ------------------------------------------------------------------------------------------------------ CLI


def _write_config(sc: Scenario, folder: Path) -> Path:
    url = sc.store.engine.url.render_as_string(hide_password=False)
    text = f"""
[store]
url = "{url}"

[identity]
default_region = "DE"
cross_ids = ["erp_no"]
source_priority = ["shop", "cc"]

[sources.shop]
adapter = "memory-shop"
[sources.cc]
adapter = "memory-cc"

[[writeback]]
trait = "test.tier"
source = "shop"
object_type = "customers"
field = "cx_tier"
"""
    path = folder / "cxbridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _cli(sc: Scenario, tmp_path: Path, *args: str) -> Any:
    from typer.testing import CliRunner

    from cxbridge.cli.app import create_app

    config = _write_config(sc, tmp_path)
    app = create_app(plugin_manager_factory=lambda: sc.engine.pm)
    return CliRunner().invoke(app, ["--config", str(config), *args])


def test_cli_customers_show_json(sc: Scenario, tmp_path: Path) -> None:
    result = _cli(sc, tmp_path, "customers", "show", "030 1234567", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["customer"]["id"] == sc.ann
    assert data["customer"]["emails"] == ["ann.lee@example.com"]
    assert data["customer"]["traits"]["test.tier"]["value"] == "gold"
    assert {(i["source"], i["source_id"]) for i in data["identities"]} == {("shop", "1"), ("cc", "c1")}
    assert [i["source_id"] for i in data["interactions"]] == ["o2", "k1", "o1"]
    assert data["open_writes"] == 1
    assert {e["name"] for e in data["events"]} == {"test.scored"}


def test_cli_customers_show_text_and_not_found(sc: Scenario, tmp_path: Path) -> None:
    result = _cli(sc, tmp_path, "customers", "show", "shop/2")
    assert result.exit_code == 0, result.output
    assert "Bob Stone" in result.stdout.split("Identities")[0]
    assert sc.bob in result.stdout
    for expected in ("c2", "xid:erp_no", "invoice", "99.00 EUR"):
        assert expected in result.stdout
    missing = _cli(sc, tmp_path, "customers", "show", "nobody@example.com")
    assert missing.exit_code != 0
    assert "nobody@example.com" in str(missing.exception or "") + missing.output


def test_cli_customers_search(sc: Scenario, tmp_path: Path) -> None:
    result = _cli(sc, tmp_path, "customers", "search", "stone")
    assert result.exit_code == 0, result.output
    assert sc.bob in result.stdout and sc.ann not in result.stdout
    assert "bob@example.com" in result.stdout
    assert "1 customer" in result.stdout


def test_cli_export_to_file(sc: Scenario, tmp_path: Path) -> None:
    out = tmp_path / "links.csv"
    result = _cli(sc, tmp_path, "export", "links", "--format", "csv", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert {(r["source"], r["source_id"]) for r in rows} == {("shop", "1"), ("cc", "c1"), ("shop", "2"),
                                                             ("cc", "c2"), ("shop", "3")}
    result = _cli(sc, tmp_path, "export", "customers")
    assert result.exit_code == 0, result.output
    assert {json.loads(line)["id"] for line in result.stdout.splitlines()} == {sc.ann, sc.bob, sc.cleo}
    bad_out = tmp_path / "orders.jsonl"
    bad = _cli(sc, tmp_path, "export", "orders", "-o", str(bad_out))
    assert bad.exit_code != 0
    assert "customers, interactions, links" in str(bad.exception or "") + bad.output
    assert not bad_out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cxbridge.toml", "links.csv"]  # no partial files


def test_a_record_deleted_in_its_crm_leaves_the_view_and_the_exports(store: Any) -> None:
    sc = build(store)
    sc.cc.delete("contacts", "c1", modstamp=T0 + timedelta(hours=1))
    sc.engine.run(["cc"])
    view = sc.bridge.customer(sc.ann)
    assert [(i.source, i.source_id) for i in view.identities] == [("shop", "1")]
    assert sc.bridge.status()["customers_in_several_sources"] == 1  # Bob only
    _n, text = _export(sc.bridge, "links", "jsonl")
    assert ("cc", "c1") not in {(json.loads(x)["source"], json.loads(x)["source_id"]) for x in text.splitlines()}
    with pytest.raises(NotFound):
        sc.bridge.find_customer_id("cc/c1")
    assert sc.bridge.find_customer_id("ann.lee@example.com") == sc.ann  # the shop still knows her
