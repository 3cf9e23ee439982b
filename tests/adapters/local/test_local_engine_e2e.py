"""Both local adapters driven by the real sync engine into a real store (SQLite and PostgreSQL stores).

Asserts on store rows: every party and call mirrored once, the malformed CSV row quarantined with its
``__error__`` reason while the rest syncs, a soft delete becoming a tombstone, a re-dropped file and a
re-run changing nothing.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cxbridge_local.config import LocalFilesConfig
from cxbridge_local.files import LocalFilesAdapter
from cxlocal_db import CrmDb
from sqlalchemy import select

from cxbridge.store import schema as s
from cxbridge.testing.contract import make_test_context
from cxbridge.testing.memory import memory_setup

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _rows(store: Any, query: Any) -> list[Any]:
    with store.connect() as conn:
        return list(conn.execute(query))


def test_engine_syncs_sql_and_file_sources(store: Any, tmp_path: Path) -> None:
    db = CrmDb("sqlite", tmp_path)
    ids = db.add_parties(7)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "calls_1.csv").write_text(
        "call_id,party,started_at,topic\n"
        f"K1,{ids[0]},2024-05-01T10:00:00,billing\n"
        "K2,oops,too,many,columns\n"
        f"K3,{ids[1]},2024-05-01T11:00:00,delivery\n",
        encoding="utf-8",
    )
    files = LocalFilesAdapter(
        LocalFilesConfig.model_validate(
            {
                "folder": str(drop),
                "page_size": 2,
                "objects": {
                    "calls": {
                        "pattern": "*.csv",
                        "id_column": "call_id",
                        "entity": "interaction",
                        "modstamp_column": "started_at",
                        "customer_ref_column": "party",
                        "customer_object": "customers",
                        "mapping": {
                            "occurred_at": "started_at",
                            "type": "=call",
                            "channel": "=phone",
                            "subject": "topic",
                        },
                    }
                },
            }
        ),
        make_test_context("calls"),
    )
    sql = db.adapter(page_size=3)
    sql.config.objects.pop("orders")
    engine = memory_setup(
        store, {"crm": sql, "calls": files}, config={"sync": {"lookback_seconds": 0}}, now=lambda: NOW
    )
    runs = {r.source: r for r in engine.run()}
    assert runs["crm"].status == "succeeded" and runs["crm"].records_read == 7 and runs["crm"].pages == 3
    assert runs["calls"].records_read == 3 and runs["calls"].records_quarantined == 1
    mirror = _rows(store, select(s.source_records.c.source, s.source_records.c.source_id))
    assert sorted(r.source_id for r in mirror if r.source == "crm") == sorted(ids)
    assert sorted(r.source_id for r in mirror if r.source == "calls") == ["K1", "K3"]
    (q,) = _rows(store, select(s.quarantine.c.source_id, s.quarantine.c.reason))
    assert q.source_id == "calls_1.csv#2" and "expected 4 columns, got 5" in q.reason

    # soft delete + a re-dropped copy of the export: one tombstone, nothing else changes
    db.touch_parties([ids[3]], is_deleted=True)
    shutil.copy(drop / "calls_1.csv", drop / "calls_1_copy.csv")
    runs = {r.source: r for r in engine.run()}
    assert runs["crm"].records_read == 1 and runs["calls"].records_read == 0
    deleted = _rows(store, select(s.source_records.c.source_id).where(s.source_records.c.deleted.is_(True)))
    assert [r.source_id for r in deleted] == [ids[3]]
    runs = {r.source: r for r in engine.run()}
    assert runs["crm"].records_read == 0 and runs["calls"].records_read == 0
    assert len(_rows(store, select(s.quarantine.c.id))) == 1
    sql.close()
    db.close()
