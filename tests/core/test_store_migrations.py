"""Migrations create exactly the tables of ``cxbridge.store.schema`` and are idempotent and race-free."""

from __future__ import annotations

import threading

import pytest
from alembic import command
from sqlalchemy import inspect

from cxbridge.store import Store, open_store, schema
from cxbridge.store.migrate import alembic_config, current_revision, head_revision, upgrade

pytest_plugins = ["cxbridge.testing.stores"]


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def store(request: pytest.FixtureRequest, store_factory) -> Store:
    """The store-level suite also runs on MySQL/MariaDB (a supported, if not the recommended, server)."""
    return store_factory(request.param, fresh=False)


def _reflect(store: Store) -> dict[str, dict[str, bool]]:
    insp = inspect(store.engine)
    return {
        name: {c["name"]: bool(c["nullable"]) for c in insp.get_columns(name)}
        for name in insp.get_table_names()
        if name != "alembic_version"
    }


def _expected() -> dict[str, dict[str, bool]]:
    return {t.name: {c.name: bool(c.nullable) for c in t.columns} for t in schema.metadata.sorted_tables}


def test_upgrade_creates_exactly_the_schema(store: Store) -> None:
    assert _reflect(store) == _expected()
    assert len(_expected()) == 21
    insp = inspect(store.engine)
    for table in schema.metadata.sorted_tables:
        pk = insp.get_pk_constraint(table.name)["constrained_columns"]
        assert sorted(pk) == sorted(c.name for c in table.primary_key.columns), table.name
        expected_ix = {ix.name for ix in table.indexes}
        got_ix = {ix["name"] for ix in insp.get_indexes(table.name)}
        assert expected_ix <= got_ix, (table.name, expected_ix - got_ix)
    assert current_revision(store) == head_revision()


def test_upgrade_is_idempotent(store: Store) -> None:
    before = _reflect(store)
    assert upgrade(store) is False  # already at head: nothing applied
    with store.engine.connect() as conn:
        command.upgrade(alembic_config(conn), "head")  # alembic itself finds nothing to do
        conn.commit()
    assert _reflect(store) == before
    assert current_revision(store) == head_revision()


def test_open_without_migrate_leaves_database_empty(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'sub' / 'dir' / 'x.db'}", migrate=False)
    try:
        assert (tmp_path / "sub" / "dir").is_dir()  # parent folder created
        assert current_revision(store) is None
        assert inspect(store.engine).get_table_names() == []
        assert upgrade(store) is True
        assert current_revision(store) == head_revision()
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_first_open_does_not_race(backend: str, store_factory, tmp_path) -> None:
    """Four openers of one fresh store at once: exactly one migrates, all end at head, no error."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
    else:
        seed = store_factory.postgres()  # a fresh schema; reset it to empty and race on it
        url = seed.engine.url.render_as_string(hide_password=False)
        with seed.begin() as conn:
            schema.metadata.drop_all(conn)
            conn.exec_driver_sql("DROP TABLE alembic_version")
        seed.close()
    errors: list[BaseException] = []
    stores: list[Store] = []
    barrier = threading.Barrier(4)

    def opener() -> None:
        try:
            barrier.wait()
            stores.append(open_store(url))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(stores) == 4
        assert current_revision(stores[0]) == head_revision()
        assert _reflect(stores[0]) == _expected()
    finally:
        for s in stores:
            s.close()


def test_sqlite_connection_settings(sqlite_store: Store) -> None:
    with sqlite_store.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    assert sqlite_store.dialect == "sqlite"


def test_url_is_redacted() -> None:
    from cxbridge.store import redact_url

    assert "s3cret" not in redact_url("postgresql+psycopg://u:s3cret@h/db")
    assert "***" in redact_url("postgresql+psycopg://u:s3cret@h/db")


def test_bad_url_is_a_store_error(tmp_path) -> None:
    from cxbridge.errors import StoreError

    with pytest.raises(StoreError, match="unsupported store backend"):
        open_store("oracle://u:pw@h/db")
    with pytest.raises(StoreError) as info:
        open_store("postgresql+psycopg://u:s3cret@127.0.0.1:1/db", connect_args={"connect_timeout": 2})
    assert "s3cret" not in str(info.value)


def test_store_from_a_newer_cxbridge_is_refused(tmp_path) -> None:
    from cxbridge.errors import StoreError

    url = f"sqlite:///{tmp_path / 'new.db'}"
    open_store(url).close()
    store = open_store(url, migrate=False)
    with store.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    store.close()
    with pytest.raises(StoreError, match="newer cxbridge"):
        open_store(url)


def test_0002_keeps_identity_keys_and_restores_them_on_downgrade(store: Store) -> None:
    """0001 -> 0002 drops identity_keys.customer_id (keys find customers through links) without losing keys;
    on SQLite the table becomes WITHOUT ROWID. Downgrading fills customer_id from the links again."""
    from datetime import datetime

    from sqlalchemy import column, insert, select, table

    from cxbridge.identity.resolver import key_owners

    links = table("source_links", *(column(c) for c in (
        "source", "object_type", "source_id", "entity", "customer_id", "linked_at")))
    keys_v1 = table("identity_keys", *(column(c) for c in ("key", "source", "object_type", "source_id",
                                                           "customer_id")))
    records = (("crm", "contacts", "1"), ("shop", "customers", "9"))
    key_rows = (("email:ann@x.test", "crm", "contacts", "1"), ("email:ann@x.test", "shop", "customers", "9"),
                ("phone:+4930123", "shop", "customers", "9"))
    with store.engine.connect() as conn:
        command.downgrade(alembic_config(conn), "0001")
        conn.commit()
    try:
        with store.begin() as conn:
            conn.execute(insert(links), [
                {"source": src, "object_type": ot, "source_id": sid, "entity": "customer", "customer_id": "cus_A",
                 "linked_at": datetime(2026, 1, 1)} for src, ot, sid in records])
            conn.execute(insert(keys_v1), [
                {"key": key, "source": src, "object_type": ot, "source_id": sid, "customer_id": "cus_A"}
                for key, src, ot, sid in key_rows])
        assert upgrade(store) is True
        assert "customer_id" not in {c["name"] for c in inspect(store.engine).get_columns("identity_keys")}
        with store.connect() as conn:
            assert sorted(key_owners(conn, ["email:ann@x.test", "phone:+4930123"])) == [
                ("email:ann@x.test", "cus_A"), ("email:ann@x.test", "cus_A"), ("phone:+4930123", "cus_A")]
            if store.dialect == "sqlite":
                ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'identity_keys'").scalar()
                assert "WITHOUT ROWID" in ddl
                indexes = {r[0]: r[1] for r in conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'customers'")}
                assert "IS NOT NULL" in indexes["ix_customers_organization_id"]
                assert "ix_customers_primary_email" not in indexes
        with store.engine.connect() as conn:
            command.downgrade(alembic_config(conn), "0001")
            conn.commit()
        with store.connect() as conn:
            rows = conn.execute(select(keys_v1.c.key, keys_v1.c.source_id, keys_v1.c.customer_id).order_by(
                keys_v1.c.key, keys_v1.c.source_id)).all()
        assert [tuple(r) for r in rows] == [(k, sid, "cus_A") for k, _src, _ot, sid in key_rows]
    finally:
        upgrade(store)
        with store.begin() as conn:
            conn.execute(schema.identity_keys.delete())
            conn.execute(schema.source_links.delete())
    assert _reflect(store) == _expected()
