"""local-sql write-back (UPDATE, per-row failure, upsert, create), erasure, check() and secret handling."""

from __future__ import annotations

import sqlalchemy as sa
from cxlocal_db import CrmDb

from cxbridge.adapters import RecordRef, WriteOp
from cxbridge.testing.contract import drain


def test_write_back_updates_and_isolates_failing_rows(db: CrmDb) -> None:
    ids = db.add_parties(4)
    adapter = db.adapter()
    _, cursor, _ = drain(adapter, "customers")
    ops = [
        WriteOp(key="a", object_type="customers", action="update", source_id=ids[0], fields={"cx_tier": "gold"}),
        # unique violation on erp_no: fails inside its savepoint only
        WriteOp(
            key="dup", object_type="customers", action="update", source_id=ids[1], fields={"erp_no": "E00003"}
        ),
        WriteOp(
            key="missing", object_type="customers", action="update", source_id="424242", fields={"cx_tier": "gold"}
        ),
        WriteOp(key="badcol", object_type="customers", action="update", source_id=ids[2], fields={"nope": 1}),
        WriteOp(key="b", object_type="customers", action="update", source_id=ids[3], fields={"cx_tier": "silver"}),
    ]
    results = {r.key: r for r in adapter.write(ops)}
    assert {k: r.ok for k, r in results.items()} == {
        "a": True,
        "dup": False,
        "missing": False,
        "badcol": False,
        "b": True,
    }
    assert "IntegrityError" in (results["dup"].error or "")
    assert "no customers record" in (results["missing"].error or "") and not results["missing"].retryable
    assert "nope" in (results["badcol"].error or "")
    assert db.row(db.party, ids[0])["cx_tier"] == "gold"
    assert db.row(db.party, ids[3])["cx_tier"] == "silver"
    assert db.row(db.party, ids[1])["erp_no"] == "E00002", "the failed row is rolled back"
    # touch_on_write: the CRM sees a change, and the next incremental read brings our write back once
    after, _, _ = drain(adapter, "customers", cursor)
    assert sorted(r.source_id for r in after) == sorted([ids[0], ids[3]])
    assert {r.fields["cx_tier"] for r in after} == {"gold", "silver"}
    adapter.close()


def test_upsert_by_unique_column_and_create_task(db: CrmDb) -> None:
    ids = db.add_parties(1)
    adapter = db.adapter()
    results = adapter.write(
        [
            WriteOp(
                key="u1",
                object_type="customers",
                action="upsert",
                id_property="erp_no",
                id_value="E00001",
                fields={"cx_tier": "gold"},
            ),
            WriteOp(
                key="u2",
                object_type="customers",
                action="upsert",
                id_property="erp_no",
                id_value="E09999",
                fields={"first_name": "New", "cx_tier": "bronze"},
            ),
            WriteOp(
                key="t1",
                object_type="task",
                action="create",
                fields={"subject": "Call back", "body": "NPS 3"},
                associations={"customers": [ids[0]]},
            ),
            WriteOp(key="n1", object_type="note", action="create", fields={"subject": "x"}),
        ]
    )
    by = {r.key: r for r in results}
    assert by["u1"].ok and by["u1"].source_id == ids[0]
    assert by["u2"].ok and by["u2"].source_id and by["u2"].source_id != ids[0]
    assert db.row(db.party, by["u2"].source_id)["erp_no"] == "E09999"
    assert db.row(db.party, ids[0])["cx_tier"] == "gold"
    assert by["t1"].ok and by["t1"].source_id
    task = db.row(db.task, by["t1"].source_id)
    assert (task["title"], task["body"], task["party_id"]) == ("Call back", "NPS 3", int(ids[0]))
    assert not by["n1"].ok and "not supported" in (by["n1"].error or "") and not by["n1"].retryable
    adapter.close()


def test_erase_deletes_row_and_related_rows(db: CrmDb) -> None:
    ids = db.add_parties(2, emails=2)
    adapter = db.adapter()
    results = adapter.erase([RecordRef("customers", ids[0]), RecordRef("customers", "999999")])
    assert [(r.key, r.ok) for r in results] == [(f"customers:{ids[0]}", True), ("customers:999999", True)]
    assert db.row(db.party, ids[0]) == {}
    assert db.count(db.cm, db.cm.c.party_id == int(ids[0])) == 0
    assert db.count(db.cm, db.cm.c.party_id == int(ids[1])) == 2
    adapter.close()


def test_erase_by_anonymizing(sqlite_db: CrmDb) -> None:
    db = sqlite_db
    ids = db.add_parties(1)
    config = db.config()
    config["objects"]["customers"].update(
        erase_mode="anonymize", anonymize={"first_name": "erased", "last_name": None, "erp_no": None}
    )
    adapter = db.adapter(config)
    _, cursor, _ = drain(adapter, "customers")
    assert adapter.erase([RecordRef("customers", ids[0])])[0].ok
    row = db.row(db.party, ids[0])
    assert (row["first_name"], row["last_name"], row["erp_no"]) == ("erased", None, None)
    assert db.count(db.cm) == 0
    after, _, _ = drain(adapter, "customers", cursor)
    assert after[0].fields["emails"] == [] and after[0].fields["first_name"] == "erased"
    adapter.close()


def test_check_reports_tables_columns_and_writeback_fields(db: CrmDb) -> None:
    adapter = db.adapter()
    ok = adapter.check({"customers": ["cx_tier"]})
    assert all(c.ok for c in ok), ok
    bad = adapter.check({"customers": ["cx_tier", "no_such_field"], "deals": ["x"]})
    failing = {c.name: c.detail for c in bad if not c.ok}
    assert "no_such_field" in failing["write-back customers"]
    assert "deals" in " ".join(failing)
    adapter.close()
    config = db.config()
    config["objects"]["customers"]["related"]["emails"]["value"] = "email_address"
    adapter = db.adapter(config)
    failing = {c.name: c.detail for c in adapter.check({}) if not c.ok}
    assert "email_address" in failing["stream customers"]
    assert "objects.customers.related.emails" in failing["stream customers"]
    adapter.close()


def test_database_password_never_appears_in_errors(tmp_path) -> None:
    from cxbridge_local.config import LocalSqlConfig
    from cxbridge_local.sql import LocalSqlAdapter

    from cxbridge.errors import AdapterError
    from cxbridge.testing.contract import make_test_context

    secret = "s3cr3t-Pw-4711"
    config = LocalSqlConfig.model_validate(
        {
            "url": f"postgresql+psycopg://crm:{secret}@127.0.0.1:1/crm?connect_timeout=1",
            "objects": {"customers": {"table": "party", "change_column": "updated_at"}},
        }
    )
    assert secret not in repr(config) and secret not in str(config.model_dump())
    adapter = LocalSqlAdapter(config, make_test_context("crm"))
    checks = adapter.check({})
    assert not checks[0].ok and secret not in checks[0].detail and "***" in checks[0].detail
    try:
        list(adapter.read("customers", __import__("cxbridge.adapters").adapters.Cursor()))
    except AdapterError as exc:
        assert secret not in str(exc) and exc.kind == "transient"
    else:  # pragma: no cover
        raise AssertionError("reading from a closed port must fail")
    adapter.close()


def test_write_batch_is_atomic_when_the_connection_fails(sqlite_db: CrmDb) -> None:
    """A batch whose transaction cannot commit reports every op as retryable (nothing half-written)."""
    db = sqlite_db
    ids = db.add_parties(2)
    adapter = db.adapter()

    def boom(conn, cursor, statement, params, context, executemany):
        if statement.startswith("UPDATE") or statement.startswith("RELEASE"):
            raise sa.exc.OperationalError(statement, params, Exception("database is locked"))

    sa.event.listen(adapter.engine, "before_cursor_execute", boom)
    results = adapter.write(
        [
            WriteOp(key=str(i), object_type="customers", action="update", source_id=sid, fields={"cx_tier": "x"})
            for i, sid in enumerate(ids)
        ]
    )
    assert all(not r.ok and r.retryable for r in results)
    assert all(db.row(db.party, sid)["cx_tier"] is None for sid in ids)
    adapter.close()
