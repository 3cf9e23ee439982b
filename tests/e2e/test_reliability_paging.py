"""Records changing while the engine pages through a local SQL CRM; malformed file-drop rows quarantined.

Both run in-process against the real local adapters and both stores.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cxbridge.adapters import Cursor, Page
from cxbridge.config import config_from_dict
from cxbridge.plugins import get_plugin_manager
from cxbridge.sources import build_adapter
from cxbridge.store import schema as s
from cxbridge.sync import SyncEngine

STAMP = "2024-03-01 10:00:{:02d}.000000"


def _pm(monkeypatch: Any) -> Any:
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "cxbridge-local")
    return get_plugin_manager()


def test_records_updated_while_paging_are_neither_lost_nor_stale(
    tmp_path: Path, store: Any, monkeypatch: Any
) -> None:
    source = tmp_path / "crm.db"
    db = sqlite3.connect(source, check_same_thread=False)  # edited from the engine's reader thread
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, updated_at TEXT NOT NULL)")
    # 300 rows sharing three timestamps: pages cut through groups of equal stamps
    db.executemany("INSERT INTO customers VALUES (?,?,?,?)",
                   [(i, f"v1-{i}", f"p{i}@example.com", STAMP.format(i // 100)) for i in range(1, 301)])
    db.commit()
    pm = _pm(monkeypatch)
    config = config_from_dict({
        "identity": {"default_region": "DE"},
        "sync": {"lookback_seconds": 0},
        "sources": {"crm": {"adapter": "local-sql", "connection": {
            "url": f"sqlite:///{source}", "page_size": 25,
            "objects": {"customers": {"table": "customers", "change_column": "updated_at",
                                      "mapping": {"full_name": "name", "emails": "email"}}}}}},
    }, pm=pm)
    adapter = build_adapter(config, "crm", pm=pm, store=store)
    original = adapter.read
    pages = {"n": 0}
    later = iter(range(10, 60))

    def read(stream: str, cursor: Cursor, *, full: bool = False) -> Iterator[Page]:
        for page in original(stream, cursor, full=full):
            yield page
            pages["n"] += 1
            # between pages, a user edits a record already read and one not read yet
            stamp = STAMP.format(next(later))
            done, ahead = pages["n"] * 25 - 3, min(300, pages["n"] * 25 + 40)
            db.execute("UPDATE customers SET name = ?, updated_at = ? WHERE id IN (?, ?)",
                       (f"v2-page{pages['n']}", stamp, done, ahead))
            db.commit()

    adapter.read = read  # type: ignore[method-assign]
    engine = SyncEngine(store, config, pm, {"crm": adapter})
    (first,) = engine.run()
    assert first.status == "succeeded"
    adapter.read = original  # type: ignore[method-assign]
    (second,) = engine.run()  # the edits stamped after the first run's pages come in now
    assert second.status == "succeeded"
    expected = {str(i): n for i, n in db.execute("SELECT id, name FROM customers")}
    with store.connect() as conn:
        mirror = {r.source_id: r.fields["name"] for r in conn.execute(select(s.source_records))}
        golden = {r.display_name for r in conn.execute(select(s.customers))}
    assert mirror == expected
    assert golden == set(expected.values())  # every golden record is current
    (third,) = engine.run()
    assert third.records_changed == 0


def test_malformed_file_rows_are_quarantined_and_the_rest_syncs(tmp_path: Path, store: Any,
                                                                monkeypatch: Any) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "calls-001.csv").write_text(
        "id,name,email,phone,changed\n"
        "c1,Ann Lee,ann@example.com,030 1234567,2024-03-01T10:00:00Z\n"
        "c2,Bob,bob@example.com\n"
        "c3,Cy,not-an-email,,2024-03-01T10:00:00Z\n"
        "c4,Dee,dee@example.com,+49 30 7654321,2024-03-01T10:00:00Z,extra\n"
        "c5,Eve,eve@example.com,,2024-03-01T10:00:00Z\n"
    )
    pm = _pm(monkeypatch)
    config = config_from_dict({
        "identity": {"default_region": "DE"},
        "sources": {"calls": {"adapter": "local-files", "connection": {
            "folder": str(drop),
            "objects": {"contacts": {"pattern": "*.csv", "id_column": "id", "modstamp_column": "changed",
                                     "mapping": {"full_name": "name", "emails": "email", "phones": "phone"}}}}}},
    }, pm=pm)
    adapter = build_adapter(config, "calls", pm=pm, store=store)
    engine = SyncEngine(store, config, pm, {"calls": adapter})
    (run,) = engine.run()
    assert run.status == "succeeded"
    with store.connect() as conn:
        names = sorted(r.display_name for r in conn.execute(select(s.customers)))
        quarantined = conn.execute(select(s.quarantine.c.source_id, s.quarantine.c.reason)).all()
    assert "Ann Lee" in names and "Eve" in names
    assert "Cy" not in names
    assert run.records_quarantined == len(quarantined) >= 2
    reasons = " ".join(r.reason for r in quarantined)
    assert "'email' -> emails" in reasons
    # re-dropping the same file changes nothing
    (drop / "calls-001-copy.csv").write_bytes((drop / "calls-001.csv").read_bytes())
    (again,) = engine.run()
    assert again.records_changed == 0
