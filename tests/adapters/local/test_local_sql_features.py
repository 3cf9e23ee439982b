"""local-sql reading: related-table values, related changes, soft deletes, reconciliation, interactions."""

from __future__ import annotations

import sqlalchemy as sa
from cxlocal_db import CrmDb, naive

from cxbridge.adapters import Cursor
from cxbridge.testing.contract import drain


def _add_contacts(db: CrmDb, pid: str) -> None:
    stamp = naive(db.clock.tick())
    with db.engine.begin() as conn:
        conn.execute(
            sa.insert(db.cm),
            [
                {
                    "party_id": int(pid),
                    "kind": "email",
                    "value": "ann.work@example.com",
                    "is_primary": False,
                    "updated_at": stamp,
                },
                {
                    "party_id": int(pid),
                    "kind": "phone",
                    "value": "+49 30 1234567",
                    "is_primary": True,
                    "updated_at": stamp,
                },
                {"party_id": int(pid), "kind": "phone", "value": "", "is_primary": False, "updated_at": stamp},
            ],
        )
        conn.execute(
            sa.insert(db.address).values(
                party_id=int(pid),
                kind="billing",
                street="Hauptstr. 1",
                city="Berlin",
                postal_code="10115",
                country="DE",
                updated_at=stamp,
            )
        )


def test_related_values_are_mapped_in_one_query_per_page(db: CrmDb) -> None:
    ids = db.add_parties(3)
    _add_contacts(db, ids[1])
    statements: list[str] = []
    adapter = db.adapter(page_size=10)
    sa.event.listen(
        adapter.engine, "before_cursor_execute", lambda conn, cur, stmt, params, ctx, many: statements.append(stmt)
    )
    records, _, pages = drain(adapter, "customers")
    adapter.close()
    by_id = {r.source_id: r for r in records}
    ann = by_id[ids[1]].fields
    # primary email first (order_by is_primary desc), empty phone values dropped, other kinds filtered out
    assert ann["emails"] == ["p2.0@example.com", "ann.work@example.com"]
    assert ann["phones"] == ["+49 30 1234567"]
    assert ann["addresses"] == [
        {"kind": "billing", "line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}
    ]
    assert by_id[ids[0]].fields["phones"] == [] and by_id[ids[0]].fields["addresses"] == []
    assert ann["erp_no"] == "E00002" and ann["first_name"] == "First2"
    assert len(pages) == 1
    # the stream's default mapping turns the related values into canonical lists (engine's compiler)
    from cxbridge.sync.mapping import compile_mapping

    info = {s.name: s for s in adapter.streams()}["customers"]
    patch = compile_mapping(info.default_mapping, info.entity, default_region="DE")(ann)
    assert patch["emails"] == ["p2.0@example.com", "ann.work@example.com"]
    assert patch["phones"] == ["+49301234567"]
    assert patch["addresses"][0]["city"] == "Berlin" and patch["external_ids.erp_no"] == "E00002"
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    related = [s for s in selects if "contact_mechanism" in s or "address" in s]
    # one page: one party query + one batched query per related field (emails, phones, addresses)
    assert len(related) == 3, related
    assert all(" IN " in s.upper() for s in related)


def test_related_fields_of_one_table_share_one_query(db: CrmDb) -> None:
    """Emails and phones kept in one contact-mechanism table (same key, same order) come from one query; each
    row goes to the field whose filter it matches; a field of its own filter and the address columns too."""
    ids = db.add_parties(3)
    _add_contacts(db, ids[1])
    config = db.config(page_size=10)
    related = config["objects"]["customers"]["related"]
    related["phones"].update(order_by="is_primary", descending=True)
    related["all_contacts"] = {**related["phones"], "where": {}, "columns": ["kind", "value"], "value": None}
    related["all_contacts"].pop("value")
    related["phone_numbers"] = dict(related["phones"])  # the same filter as phones: shares its rows
    statements: list[str] = []
    adapter = db.adapter(config)
    sa.event.listen(
        adapter.engine, "before_cursor_execute", lambda conn, cur, stmt, params, ctx, many: statements.append(stmt)
    )
    records, _, pages = drain(adapter, "customers")
    adapter.close()
    ann = {r.source_id: r for r in records}[ids[1]].fields
    assert ann["emails"] == ["p2.0@example.com", "ann.work@example.com"]
    assert ann["phones"] == ann["phone_numbers"] == ["+49 30 1234567"]
    assert sorted(map(tuple, (c.values() for c in ann["all_contacts"]))) == [
        ("email", "ann.work@example.com"), ("email", "p2.0@example.com"), ("phone", ""),
        ("phone", "+49 30 1234567")]
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    contact_queries = [s for s in selects if "contact_mechanism" in s and " IN " in s.upper()]
    # emails + phones + phone_numbers in one query; all_contacts (no filter) in its own
    assert len(contact_queries) == 2, contact_queries
    assert pages[0].api_calls == 1 + 3  # the parties, two contact queries, the addresses


def test_change_in_related_table_is_picked_up(db: CrmDb) -> None:
    ids = db.add_parties(5)
    adapter = db.adapter(related_change=True)
    _, cursor, _ = drain(adapter, "customers")
    plain = db.adapter(related_change=False)
    _, plain_cursor, _ = drain(plain, "customers")
    with db.engine.begin() as conn:  # someone edits only the contact mechanism row of party 3
        conn.execute(
            sa.update(db.cm)
            .where(db.cm.c.party_id == int(ids[2]))
            .values(value="new.address@example.com", updated_at=naive(db.clock.tick()))
        )
    after, new_cursor, _ = drain(adapter, "customers", cursor)
    assert [r.source_id for r in after] == [ids[2]]
    assert after[0].fields["emails"] == ["new.address@example.com"]
    assert after[0].modstamp is not None and after[0].modstamp > cursor.modstamp
    assert drain(adapter, "customers", new_cursor)[0] == [], "read once, not again"
    # without change_column on the related tables the edit is invisible until the party changes (documented)
    assert drain(plain, "customers", plain_cursor)[0] == []
    adapter.close()
    plain.close()


def test_soft_delete_yields_tombstone_and_list_ids_skips_it(db: CrmDb) -> None:
    ids = db.add_parties(4)
    adapter = db.adapter()
    _, cursor, _ = drain(adapter, "customers")
    db.touch_parties([ids[1]], is_deleted=True)
    after, _, _ = drain(adapter, "customers", cursor)
    assert [(r.source_id, r.deleted, r.fields) for r in after] == [(ids[1], True, {})]
    assert sorted(adapter.list_ids("customers")) == sorted([ids[0], ids[2], ids[3]])
    pages = list(adapter.read_ids("customers", [ids[0], ids[1], "999999"]))
    got = {r.source_id: r.deleted for p in pages for r in p.records}
    assert got == {ids[0]: False, ids[1]: True, "999999": True}
    adapter.close()


def test_reconcile_deletes_by_id_listing(db: CrmDb) -> None:
    pid = db.add_parties(1)[0]
    with db.engine.begin() as conn:
        for _i in range(3):
            conn.execute(
                sa.insert(db.orders).values(
                    party_id=int(pid),
                    total="19.90",
                    currency="EUR",
                    ordered_at=naive(db.clock.now),
                    updated_at=naive(db.clock.tick()),
                )
            )
    adapter = db.adapter()
    info = {s.name: s for s in adapter.streams()}["orders"]
    assert info.supports_deletes is False and info.entity == "interaction"
    assert info.default_mapping["customer_ref"] == "party_id"
    records, _, _ = drain(adapter, "orders")
    assert len(records) == 3
    assert all(r.associations == {"customers": [pid]} for r in records)
    assert records[0].fields["total"] == "19.9"
    with db.engine.begin() as conn:
        conn.execute(sa.delete(db.orders).where(db.orders.c.id == int(records[1].source_id)))
    live = list(adapter.list_ids("orders"))
    assert sorted(live) == sorted([records[0].source_id, records[2].source_id])
    adapter.close()


def test_table_without_change_column_is_read_fully_each_run(sqlite_db: CrmDb) -> None:
    db = sqlite_db
    db.add_parties(7)
    config = db.config(page_size=3)
    config["objects"]["customers"].update(change_column=None)
    adapter = db.adapter(config)
    info = {s.name: s for s in adapter.streams()}["customers"]
    assert info.incremental is False
    records, last, pages = drain(adapter, "customers")
    assert len(records) == 7 and len({r.source_id for r in records}) == 7
    assert last.state == {}, "the final page clears the position: the next run reads everything again"
    assert pages[0].cursor.state == {"after_id": records[2].source_id}
    rest, _, _ = drain(adapter, "customers", pages[0].cursor)  # resume after a crash on page 1
    assert [r.source_id for r in rest] == [r.source_id for r in records[3:]]
    assert len(drain(adapter, "customers", last)[0]) == 7
    adapter.close()


def test_sqlite_text_timestamps_in_other_shapes(tmp_path) -> None:
    """Exports written by other tools: ISO 'T' separator with offset, and epoch-millisecond integers."""
    from cxbridge_local.config import LocalSqlConfig
    from cxbridge_local.sql import LocalSqlAdapter

    from cxbridge.testing.contract import make_test_context

    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE cust (id TEXT PRIMARY KEY, name TEXT, modified TIMESTAMP)")
        conn.exec_driver_sql("CREATE TABLE ev (id INTEGER PRIMARY KEY, cust TEXT, at_ms INTEGER)")
        for i in range(9):
            stamp = f"2024-02-0{1 + i // 3}T10:00:0{i % 3}+00:00"  # three rows share each date
            conn.exec_driver_sql("INSERT INTO cust VALUES (?, ?, ?)", (f"k{i}", f"n{i}", stamp))
            conn.exec_driver_sql(
                "INSERT INTO ev VALUES (?, ?, ?)", (i, f"k{i}", 1_706_000_000_000 + (i // 2) * 1000)
            )
    engine.dispose()
    config = LocalSqlConfig.model_validate(
        {
            "url": url,
            "page_size": 2,
            "objects": {
                "cust": {"table": "cust", "change_column": "modified"},
                "ev": {
                    "table": "ev",
                    "change_column": "at_ms",
                    "entity": "interaction",
                    "customer_ref_column": "cust",
                },
            },
        }
    )
    adapter = LocalSqlAdapter(config, make_test_context("legacy"))
    records, last, _pages = drain(adapter, "cust")
    assert [r.source_id for r in records] == [f"k{i}" for i in range(9)]
    assert records[4].modstamp is not None and records[4].modstamp.isoformat() == "2024-02-02T10:00:01+00:00"
    assert drain(adapter, "cust", last)[0] == []
    events, _, _ = drain(adapter, "ev")
    assert [r.source_id for r in events] == [str(i) for i in range(9)]
    assert events[2].modstamp is not None and events[2].modstamp.timestamp() == 1_706_000_001
    rest, _, _ = drain(adapter, "ev", Cursor(modstamp=events[2].modstamp, last_id="2"))
    assert [r.source_id for r in rest] == [str(i) for i in range(3, 9)]
    adapter.close()


def test_describe_reflects_columns_and_related_fields(db: CrmDb) -> None:
    adapter = db.adapter()
    fields = {f.name: f for f in adapter.describe("customers")}
    assert {"id", "first_name", "erp_no", "cx_tier", "updated_at", "emails", "phones", "addresses"} <= set(fields)
    assert fields["erp_no"].unique and fields["id"].unique and not fields["first_name"].unique
    assert fields["cx_tier"].writable and not fields["id"].writable and not fields["updated_at"].writable
    assert fields["emails"].type == "array" and not fields["emails"].writable
    adapter.close()


def test_ten_thousand_rows_sharing_one_timestamp(sqlite_db: CrmDb) -> None:
    """A bulk update stamps 10,000 rows alike: 1000-row pages neither loop nor skip."""
    db = sqlite_db
    stamp = naive(db.clock.tick())
    with db.engine.begin() as conn:
        conn.execute(
            sa.insert(db.party),
            [
                {"first_name": f"F{i}", "erp_no": f"B{i}", "is_deleted": False, "updated_at": stamp}
                for i in range(10_000)
            ],
        )
    adapter = db.adapter(page_size=1000)
    records, last, pages = drain(adapter, "customers")
    assert len(pages) == 10 and len({r.source_id for r in records}) == 10_000
    assert len({r.modstamp for r in records}) == 1
    assert drain(adapter, "customers", last)[0] == []
    adapter.close()


def test_computed_modstamp_windows_neither_skip_nor_repeat(db: CrmDb) -> None:
    """Related rows newer than their party reorder records; windowed pages still give each once, in order."""
    import random

    rnd = random.Random(7)
    ids = db.add_parties(40)
    late = rnd.sample(ids, 15)
    with db.engine.begin() as conn:
        for pid in late:  # some jump past every party, some land between parties
            stamp = db.clock.now + (db.clock.now - db.clock.now.replace(hour=7)) * rnd.choice([-0.5, 0.3, 2.0])
            conn.execute(sa.update(db.cm).where(db.cm.c.party_id == int(pid)).values(updated_at=naive(stamp)))
    with db.engine.connect() as conn:
        party = dict(conn.execute(sa.select(db.party.c.id, db.party.c.updated_at)).all())
        related = dict(conn.execute(sa.select(db.cm.c.party_id, db.cm.c.updated_at)).all())
    expected = {str(pid): max(party[pid], related.get(pid, party[pid])) for pid in party}
    adapter = db.adapter(page_size=3, related_change=True)
    records, _, pages = drain(adapter, "customers")
    assert sorted(r.source_id for r in records) == sorted(ids), "every party exactly once"
    assert [(r.modstamp, int(r.source_id)) for r in records] == sorted(
        (r.modstamp, int(r.source_id)) for r in records
    )
    assert all(r.modstamp and r.modstamp.replace(tzinfo=None) == expected[r.source_id] for r in records)
    middle = pages[len(pages) // 2].cursor
    rest, _, _ = drain(db.adapter(page_size=3, related_change=True), "customers", middle)
    done = {r.source_id for p in pages[: len(pages) // 2 + 1] for r in p.records}
    assert {r.source_id for r in rest} == set(ids) - done, "resuming mid-way loses and repeats nothing"
    adapter.close()


def test_timezone_aware_and_timestamp_columns(db: CrmDb) -> None:
    """PostgreSQL ``timestamptz`` and MySQL ``TIMESTAMP`` (session in UTC) page and resume like naive UTC."""
    from datetime import UTC, datetime, timedelta

    if db.backend == "sqlite":
        import pytest

        pytest.skip("SQLite has no timezone-aware column type")
    kind = sa.DateTime(timezone=True) if db.backend == "postgresql" else sa.dialects.mysql.TIMESTAMP(fsp=6)
    table = sa.Table(
        "ticket", db.md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("changed", kind, nullable=False)
    )
    table.create(db.engine)
    base = datetime(2024, 7, 1, 22, 30, tzinfo=UTC)
    stamps = [base + timedelta(minutes=i // 2) for i in range(9)]  # pairs share a stamp
    with db.engine.begin() as conn:
        conn.execute(
            sa.insert(table),
            [
                {"id": i + 1, "changed": s if db.backend == "postgresql" else naive(s)}
                for i, s in enumerate(stamps)
            ],
        )
    config = db.config(page_size=2)
    config["objects"] = {"tickets": {"table": "ticket", "schema": db.schema, "change_column": "changed"}}
    adapter = db.adapter(config)
    records, _, pages = drain(adapter, "tickets")
    assert [r.source_id for r in records] == [str(i) for i in range(1, 10)]
    assert [r.modstamp for r in records] == stamps
    rest, _, _ = drain(adapter, "tickets", pages[1].cursor)
    assert [r.source_id for r in rest] == [str(i) for i in range(5, 10)]
    adapter.close()
