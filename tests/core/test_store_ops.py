"""Store helpers and CRUD on every table family, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Boolean, Float, Integer, Numeric, String, Table, Text, func, select
from sqlalchemy.types import JSON

from cxbridge.store import Store, schema
from cxbridge.store.ops import new_id, upsert, utcnow
from cxbridge.store.schema import UTCDateTime
from cxbridge.store.state import SourceState

pytest_plugins = ["cxbridge.testing.stores"]


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def store(request: pytest.FixtureRequest, store_factory) -> Store:
    """The store-level suite also runs on MySQL/MariaDB (a supported, if not the recommended, server)."""
    return store_factory(request.param, fresh=False)


T0 = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def _value(table: Table, column: Any, n: int) -> Any:
    t = column.type
    if isinstance(t, UTCDateTime):
        return T0 + timedelta(minutes=n)
    if isinstance(t, Boolean):
        return bool(n % 2)
    if isinstance(t, Integer):
        return n
    if isinstance(t, Numeric):
        return Decimal("12.5000") + n
    if isinstance(t, Float):
        return 0.25 + n
    if isinstance(t, JSON):
        return {"n": n, "list": [1, "zwei", None, True], "nested": {"ü": "ß€"}}
    if isinstance(t, String | Text):
        size = getattr(t, "length", None) or 40
        return f"{column.name[:6]}-{n}"[:size]
    raise AssertionError(f"no sample for {table.name}.{column.name}: {t!r}")


def _row(table: Table, n: int) -> dict[str, Any]:
    return {
        c.name: _value(table, c, n)
        for c in table.columns
        if not (c.primary_key and c.autoincrement is True and isinstance(c.type, Integer))
    }


def test_crud_every_table(store: Store) -> None:
    """Insert, read back, update and delete rows of every table (one test per backend: setup is the cost)."""
    assert len(schema.metadata.sorted_tables) >= 20
    for table in schema.metadata.sorted_tables:
        _crud(store, table)


def _crud(store: Store, table: Table) -> None:
    rows = [_row(table, n) for n in range(3)]
    with store.begin() as conn:
        conn.execute(table.insert(), rows)
    with store.connect() as conn:
        got = [dict(r._mapping) for r in conn.execute(select(table))]
    assert len(got) == 3
    for want in rows:
        match = [g for g in got if all(g[k] == v for k, v in want.items())]
        assert match, f"{table.name}: {want} not read back; got {got}"
    # update one, delete one
    pk = list(table.primary_key.columns)
    first = got[0]
    cond = [c == first[c.name] for c in pk]
    target = next((c for c in table.columns if not c.primary_key), None)
    if target is not None:  # a table that is all key (identity_keys) has nothing to update
        new = _value(table, target, 99)
        with store.begin() as conn:
            conn.execute(table.update().where(*cond).values({target.name: new}))
        with store.connect() as conn:
            assert conn.execute(select(table.c[target.name]).where(*cond)).scalar_one() == new
    with store.begin() as conn:
        conn.execute(table.delete().where(*cond))
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 2


def test_upsert_insert_update_ignore(store: Store) -> None:
    t = schema.traits
    row = {
        "customer_id": "cus_1",
        "name": "segments.tier",
        "value": "gold",
        "type": "string",
        "producer": "segments",
        "computed_at": T0,
    }
    with store.begin() as conn:
        upsert(conn, t, [row], key_cols=["customer_id", "name"])
        upsert(conn, t, [row], key_cols=["customer_id", "name"])  # idempotent
    with store.begin() as conn:
        upsert(conn, t, [{**row, "value": "silver"}], key_cols=["customer_id", "name"])
        upsert(conn, t, [{**row, "value": "bronze"}], key_cols=["customer_id", "name"], update_cols=[])
    with store.connect() as conn:
        rows = conn.execute(select(t.c.value, t.c.computed_at)).all()
    assert rows == [("silver", T0)]


def test_upsert_many_rows_and_mixed_keys(store: Store) -> None:
    t = schema.source_records
    rows = [
        {
            "source": "shop",
            "object_type": "customers",
            "source_id": str(i),
            "content_hash": f"h{i}",
            "fields": {"i": i},
            "first_seen": T0,
            "last_seen": T0,
        }
        for i in range(5000)
    ]
    rows[7] = {**rows[7], "modstamp": T0}  # a row with an extra column
    with store.begin() as conn:
        upsert(conn, t, rows, key_cols=["source", "object_type", "source_id"])
        # second pass updates only fields; first_seen stays
        upsert(
            conn,
            t,
            [{**r, "fields": {"i": -1}, "first_seen": T0 + timedelta(days=1)} for r in rows[:10]],
            key_cols=["source", "object_type", "source_id"],
            update_cols=["fields"],
        )
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t)).scalar_one() == 5000
        r7 = conn.execute(select(t).where(t.c.source_id == "7")).one()
        assert r7.fields == {"i": -1} and r7.first_seen == T0 and r7.modstamp == T0
        assert conn.execute(select(t.c.associations).where(t.c.source_id == "9")).scalar_one() == {}
    with pytest.raises(KeyError, match="nope"):
        with store.begin() as conn:
            upsert(conn, t, [{"nope": 1}], key_cols=["source"])


def test_timestamps_round_trip_as_aware_utc(store: Store) -> None:
    cet = timezone(timedelta(hours=1))
    local = datetime(2026, 1, 5, 9, 0, 0, 500, tzinfo=cet)
    naive = datetime(2026, 1, 5, 9, 0, 0, 500)  # taken as UTC
    t = schema.source_state
    with store.begin() as conn:
        conn.execute(
            t.insert(),
            [
                {"source": "s", "key": "local", "value": None, "updated_at": local},
                {"source": "s", "key": "naive", "value": None, "updated_at": naive},
            ],
        )
    with store.connect() as conn:
        got = dict(conn.execute(select(t.c.key, t.c.updated_at)).all())
        # comparisons in SQL work across values written with different offsets
        later = (
            conn.execute(select(t.c.key).where(t.c.updated_at > datetime(2026, 1, 5, 8, 30, tzinfo=UTC)))
            .scalars()
            .all()
        )
    assert got["local"] == local and got["local"].tzinfo == UTC
    assert got["local"].hour == 8 and got["local"].microsecond == 500
    assert got["naive"] == naive.replace(tzinfo=UTC) and got["naive"].tzinfo == UTC
    assert later == ["naive"]
    with pytest.raises(Exception, match="expected a datetime"):
        with store.begin() as conn:
            conn.execute(t.insert(), {"source": "s", "key": "bad", "updated_at": date(2026, 1, 1)})


def test_json_round_trip(store: Store) -> None:
    payload = {"a": [1, 2.5, None, True, "x"], "ü": {"nested": {"deep": ["€", {"k": 0}]}}, "empty": {}}
    with store.begin() as conn:
        conn.execute(schema.events.insert(), {"name": "e", "payload": payload, "at": utcnow()})
        conn.execute(schema.events.insert(), {"name": "list", "payload": [1, "two"], "at": utcnow()})
    with store.connect() as conn:
        got = dict(conn.execute(select(schema.events.c.name, schema.events.c.payload)).all())
    assert got == {"e": payload, "list": [1, "two"]}


def test_source_state(store: Store) -> None:
    a, b = SourceState(store, "hub"), SourceState(store, "sf")
    assert a.get("token") is None
    a.set("token", {"refresh": "r1", "expires": 10})
    b.set("token", "other")
    a.set("token", {"refresh": "r2", "expires": 20})
    assert a.get("token") == {"refresh": "r2", "expires": 20}
    assert b.get("token") == "other"
    a.set("token", None)
    assert a.get("token") is None and b.get("token") == "other"


def test_new_id_is_unique_sortable_and_prefixed() -> None:
    ids = [new_id("cus") for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(i.startswith("cus_") and len(i) == 30 for i in ids)
    assert len(new_id("ob")) <= 64
