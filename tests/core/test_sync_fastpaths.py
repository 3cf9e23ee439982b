"""Fast paths of the sync hot path give the same results as the general code they replace."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from cxbridge.identity.resolver import _Ids, encode_id_body, key_owners
from cxbridge.store import schema as s
from cxbridge.store.ops import new_id
from cxbridge.sync.bulk import bulk_upsert, select_in

_B32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _reference(value: int) -> str:
    return base64.b32encode(value.to_bytes(20, "big"))[6:].translate(_B32).decode()


def test_page_ids_encode_like_base32_across_a_carry_of_the_cached_digits() -> None:
    ids = _Ids("cus")
    first = ids()
    assert ids.next is not None
    base = ids.next - 1
    assert first == f"cus_{_reference(base)}"
    start = (base | ((1 << 40) - 1)) - 3  # the low 40 bits overflow after four ids
    ids.next = start
    got = [ids() for _ in range(8)]
    assert got == [f"cus_{_reference(start + i)}" for i in range(8)]
    assert len(set(got)) == 8 and got == sorted(got)  # unique and time-sortable like new_id
    assert len(got[0]) == len(new_id("cus"))
    for value in (0, 1, (1 << 128) - 1, 0x0123456789ABCDEF0123456789ABCDEF):
        assert encode_id_body(value) == _reference(value)


def test_select_in_matches_core_select(store) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {"key": f"email:p{i % 3001}@x.test", "source": "crm", "object_type": "contacts", "source_id": str(i)}
        for i in range(6001)
    ]
    links = [
        {"source": src, "object_type": "contacts", "source_id": str(i), "entity": "customer",
         "customer_id": f"cus_{i}" if i < 5990 else None, "organization_id": None, "rule": "new",
         "linked_at": now}
        for src in ("crm", "shop") for i in range(20 if src == "shop" else 6001)
    ]
    with store.begin() as conn:
        bulk_upsert(conn, s.identity_keys, rows, ["key", "source", "object_type", "source_id"], [])
        bulk_upsert(conn, s.source_links, links, ["source", "object_type", "source_id"])
        wanted = [r["key"] for r in rows[::2]] + ["email:absent@x.test"]
        got = select_in(conn, s.identity_keys, ("key", "source_id"), {}, "key", wanted)
        assert sorted(got) == sorted({(r["key"], r["source_id"]) for r in rows if r["key"] in set(wanted)})
        # key owners: the customer of each key's record (records without a customer link name nobody);
        # more keys than one statement takes (5,000 on SQLite)
        owners = key_owners(conn, [*sorted({r["key"] for r in rows}), "email:absent@x.test"])
        expected = {(r["key"], f"cus_{r['source_id']}") for r in rows if int(r["source_id"]) < 5990}
        assert sorted(owners) == sorted(expected) and len(owners) == len(expected)
        got = select_in(conn, s.source_links, ("source_id", "customer_id"),
                        {"source": "shop", "object_type": "contacts"}, "source_id", ["3", "5", "99"])
        assert sorted(got) == [("3", "cus_3"), ("5", "cus_5")]
        assert select_in(conn, s.source_links, ("source_id",), {"source": "crm"}, "source_id", []) == []


def test_compact_encoder_matches_json_dumps() -> None:
    """Byte-identical to json.dumps for the values records hold (stored content hashes stay valid); where the
    text differs (exponent floats, NaN) it is the same JSON; what orjson refuses goes to the standard library."""
    import json
    from decimal import Decimal

    from cxbridge.sync.bulk import compact_encoder

    identical = [
        {"b": 1, "a": [1, 2.5, -0.0, 0.1, 1234.5678, 9e15, True, None], "ü": "Grüße \u2028 \"q\" \\ \n\x7f\x00",
         "n": {"z": {}, "y": []}, "emoji": "\U0001f600", "neg": -(2**63), "big64": 2**64 - 1},
        {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "amount": Decimal("59.90")},
        {3: "int key"}, {"big": 2**70}, "top-level string", 42, None, [],
    ]
    equivalent = [[1e300, 1.5e-05, -2e-7], [float("nan"), float("inf")]]
    for sort_keys in (False, True):
        encode = compact_encoder(sort_keys=sort_keys)
        for value in identical:
            expected = json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False,
                                  sort_keys=sort_keys)
            assert encode(value) == expected
        for value in equivalent:
            got = json.loads(encode(value))
            want = [None if v != v or v in (float("inf"), float("-inf")) else v for v in value]
            assert got == want
    with pytest.raises(TypeError):  # int and str keys cannot be sorted together: json.dumps refuses too
        compact_encoder(sort_keys=True)({3: "x", "a": 1})
    assert compact_encoder()({3: "x", "a": 1}) == '{"3":"x","a":1}'


def test_relaxed_gc_raises_the_threshold_during_runs_and_restores_it() -> None:
    import gc

    from cxbridge.sync.gctune import GEN0_THRESHOLD, relaxed_gc

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with relaxed_gc():
            assert gc.get_threshold() == (GEN0_THRESHOLD, 10, 10)
            with relaxed_gc():  # a second stream in parallel
                assert gc.get_threshold()[0] == GEN0_THRESHOLD
            assert gc.get_threshold()[0] == GEN0_THRESHOLD  # the first run is still going
        assert gc.get_threshold() == (700, 10, 10)
        with pytest.raises(RuntimeError), relaxed_gc():
            raise RuntimeError("run failed")
        assert gc.get_threshold() == (700, 10, 10)
        gc.set_threshold(100_000, 5, 5)  # the application's own, higher setting is kept
        with relaxed_gc():
            assert gc.get_threshold() == (100_000, 5, 5)
        assert gc.get_threshold() == (100_000, 5, 5)
    finally:
        gc.set_threshold(*before)


def test_sqlite_timestamp_processor_writes_what_sqlalchemy_writes(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta, timezone

    from cxbridge.sync.bulk import _processors

    table = s.source_records
    with sqlite_store.connect() as conn:
        (fast,) = _processors(conn, table, ["modstamp"])
        general = table.c.modstamp.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    values = [
        datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC), datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(2024, 1, 2, 3, 4, 5, 600),  # naive = UTC
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))), None,
        datetime(2024, 6, 1, tzinfo=UTC),
    ]
    assert fast is not None
    for value in values + values:  # twice: the processor remembers its last value
        assert fast(value) == general(value)
    with pytest.raises(TypeError):
        fast("2024-01-01")  # not a datetime: the type decorator's error


def test_trusted_source_record_equals_a_validated_one() -> None:
    from cxbridge.models import SourceRecord

    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    cases = [
        dict(source="crm", object_type="customers", source_id="7", modstamp=stamp,
             fields={"name": "Ann", "n": 1, "tags": ["a"]}, deleted=False, merged_into=None,
             associations={"orders": ["1", "2"]}),
        dict(source="crm", object_type="customers", source_id="8", modstamp=None, fields={}, deleted=True,
             merged_into="9", associations={}),
    ]
    for values in cases:
        fast = SourceRecord.trusted(**values)  # type: ignore[arg-type]
        slow = SourceRecord(**values)  # type: ignore[arg-type]
        assert fast == slow and fast.model_dump() == slow.model_dump()
        assert fast.model_fields_set == slow.model_fields_set
    assert SourceRecord.trusted("s", "o", "1", None, {}).associations == {}


@pytest.mark.parametrize("rows_in_batch", [1, 3, 20])
def test_sqlite_upsert_with_shared_values_inlined_stores_what_core_stores(store_factory, rows_in_batch) -> None:  # type: ignore[no-untyped-def]
    """Values every row of a batch shares are written into the statement as literals (None, ints, short
    texts); the stored rows -- values and SQLite storage classes -- equal a Core upsert's, for inserts and for
    the update on conflict, with quotes, NUL characters, long texts, flags and JSON among the shared values."""
    from cxbridge.store.ops import upsert
    from cxbridge.sync.bulk import RawJSON, bulk_upsert_values

    fast_store, core_store = store_factory.sqlite(), store_factory.sqlite()
    now = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    cols = ("source", "object_type", "source_id", "modstamp", "content_hash", "fields", "associations",
            "mapped", "deleted", "merged_into", "first_seen", "last_seen", "run_id")
    keys = ["source", "object_type", "source_id"]
    shared_doc = {"a": 1}

    def batch(round_: int) -> list[list[object]]:
        run = "run'1" if round_ == 0 else "x" * 2000  # long texts stay bound parameters
        return [
            ["O'Brien's \"shop\"", "nul\x00inside", f"id{i}", now, f"h{round_}",
             RawJSON(f'{{"n":{i}}}') if round_ else shared_doc, {} if round_ else {"o": ["1"]},
             shared_doc if round_ else {"first_name": "Zoë"}, bool(round_), None if round_ == 0 else "m'1",
             now, now, run]
            for i in range(rows_in_batch)
        ]

    for round_ in (0, 1):
        with fast_store.begin() as conn:
            bulk_upsert_values(conn, s.source_records, cols, batch(round_), keys)
        with core_store.begin() as conn:
            rows = [dict(zip(cols, row, strict=True)) for row in batch(round_)]
            for row in rows:
                if isinstance(row["fields"], RawJSON):
                    row["fields"] = json.loads(row["fields"])
            upsert(conn, s.source_records, rows, keys)
        query = ("SELECT " + ", ".join(f"typeof({c}), {c}" for c in cols)
                 + " FROM source_records ORDER BY source_id")
        with fast_store.connect() as fast, core_store.connect() as core:
            got = fast.exec_driver_sql(query).all()
            assert got == core.exec_driver_sql(query).all()
        assert len(got) == rows_in_batch
    # the customers table: ints (version), flags and NULLs shared by every row
    crow = ["cus_1", {"emails": []}, {"sources": []}, "Ann", None, None, None, False, True, 3, now, now]
    ccols = ("id", "data", "provenance", "display_name", "primary_email", "primary_phone", "organization_id",
             "erased", "processing_opt_out", "version", "created_at", "updated_at")
    crows = [[f"cus_{i}", *crow[1:]] for i in range(rows_in_batch)]
    with fast_store.begin() as conn:
        bulk_upsert_values(conn, s.customers, ccols, [list(r) for r in crows], ["id"])
    with core_store.begin() as conn:
        upsert(conn, s.customers, [dict(zip(ccols, r, strict=True)) for r in crows], ["id"])
    query = "SELECT " + ", ".join(f"typeof({c}), {c}" for c in ccols) + " FROM customers ORDER BY id"
    with fast_store.connect() as fast, core_store.connect() as core:
        assert fast.exec_driver_sql(query).all() == core.exec_driver_sql(query).all()


def test_sql_literals_quote_texts_and_leave_other_values_bound() -> None:
    from cxbridge.sync.bulk import RawJSON, _sql_literal

    assert _sql_literal(None) == "NULL"
    assert _sql_literal(7) == "7" and _sql_literal(-1) == "-1"
    assert _sql_literal("it's") == "'it''s'"
    assert _sql_literal(RawJSON("{}")) == "'{}'"
    for bound in (True, 1.5, b"x", "a\x00b", "x" * 513, datetime(2024, 1, 1)):
        assert _sql_literal(bound) is None
