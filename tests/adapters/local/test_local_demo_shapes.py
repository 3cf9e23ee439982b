"""The README's demo shapes end to end through the adapters and the engine's mapping compiler.

An online shop SQLite database (customers + orders) and a call-centre CSV export, configured exactly as in
adapters/local/README.md, read by the adapters and mapped by ``cxbridge.sync.mapping`` -- what the demo does.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from cxbridge.adapters import Adapter
from cxbridge.config import load_config
from cxbridge.plugins import collect_adapters, get_plugin_manager
from cxbridge.sync.mapping import compile_mapping
from cxbridge.testing.contract import drain, make_test_context

README = Path(__file__).parents[3] / "adapters" / "local" / "README.md"


def _block(marker: str, lang: str) -> str:
    text = README.read_text(encoding="utf-8")
    if marker:
        found = re.search(rf"{re.escape(marker)}\s*```{lang}\n(.*?)```", text, re.S)
    else:
        found = re.search(rf"```{lang}\n(.*?)```", text, re.S)
    assert found, f"README block {marker or lang}"
    return found.group(1)


def _workspace(tmp_path: Path) -> Path:
    (tmp_path / "cxbridge.toml").write_text(_block("<!-- demo-config -->", "toml"), encoding="utf-8")
    con = sqlite3.connect(tmp_path / "shop.db")
    con.executescript(_block("", "sql"))
    con.executemany(
        "INSERT INTO customers (id, first_name, last_name, email, phone, street, city, zip, country, loyalty_no,"
        " newsletter_opt_out, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (
                1,
                "Anna",
                "Schmidt",
                "Anna.Schmidt@Example.com",
                "030 1234567",
                "Hauptstr. 1",
                "Berlin",
                "10115",
                "DE",
                "L-1",
                0,
                "2024-05-01 10:00:00",
            ),
            (2, "Ben", "Meyer", "ben@example.org", None, None, None, None, None, "L-2", 1, "2024-05-01 11:00:00"),
        ],
    )
    con.executemany(
        "INSERT INTO orders (id, customer_id, total, currency, status, ordered_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?)",
        [(10, 1, 59.9, "EUR", "paid", "2024-05-02 09:00:00", "2024-05-02 09:00:00")],
    )
    con.commit()
    con.close()
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "contacts_20240501.csv").write_text(
        "contact_id,name,phone,email,updated_at\nCC-7,Anna Schmitt,+49 30 1234567,,2024-05-03T08:00:00\n",
        encoding="utf-8",
    )
    (exports / "calls_20240501.csv").write_text(
        "call_id,contact_id,started_at,duration_s,topic,outcome,notes\n"
        "K-1,CC-7,2024-05-03T08:05:00,310,delivery,solved,Parcel late\n",
        encoding="utf-8",
    )
    return tmp_path


def test_demo_sources_read_and_map(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    pm = get_plugin_manager()
    config = load_config(ws / "cxbridge.toml", pm=pm, env={"SHOP_DB_URL": f"sqlite:///{ws / 'shop.db'}"})
    infos = collect_adapters(pm)
    patches: dict[str, list[dict]] = {}
    for name, source in config.sources.items():
        adapter: Adapter = infos[source.adapter].factory(source.connection, make_test_context(name))
        for stream in adapter.streams():
            mapping = compile_mapping(stream.default_mapping, stream.entity, default_region="DE")
            records, _, _ = drain(adapter, stream.name)
            patches[f"{name}.{stream.name}"] = [mapping(r.fields) for r in records]
        adapter.close()
    anna, ben = patches["shop.customers"]
    assert anna["emails"] == ["anna.schmidt@example.com"] and anna["phones"] == ["+49301234567"]
    assert anna["addresses"] == [
        {"kind": "other", "line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}
    ]
    assert anna["external_ids.loyalty_no"] == "L-1" and anna["consent.email_opt_out"] is False
    assert ben["consent.email_opt_out"] is True and "phones" not in ben
    (order,) = patches["shop.orders"]
    assert order["customer_ref"] == "1" and order["type"] == "purchase" and order["amount"] == "59.9"
    (contact,) = patches["callcentre.contacts"]
    assert contact["full_name"] == "Anna Schmitt" and contact["phones"] == ["+49301234567"]
    (call,) = patches["callcentre.calls"]
    assert call["customer_ref"] == "CC-7" and call["channel"] == "phone" and call["subject"] == "delivery"
