"""SQLite's own share of the pipeline: replay the rows a finished run stored into an empty store.

Reads every row of ``source_records``, ``source_links``, ``identity_keys`` and ``customers`` from a store that
``run.py`` filled, creates the same tables (same DDL) in a new file, and inserts the rows again the way the
sync does -- ``executemany`` per table, keys sorted, one transaction per 1,000 records -- timing only the
inserts and commits. The result is the floor for this schema's writes: no Python work but the driver's.

Usage: ``python sqlite_floor.py STORE.db [--without TABLE ...]`` (``--without identity_keys`` shows the keys'
cost). Prints one JSON line: CPU µs per record in total and in the commits, and the new file's size.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

TABLES = ("source_records", "source_links", "identity_keys", "customers")
ORDER = {"identity_keys": "cast(source_id as integer), key"}  # the order the sync wrote them: page by page


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--without", nargs="*", default=[])
    parser.add_argument("--page", type=int, default=1000)
    args = parser.parse_args()
    src = sqlite3.connect(args.store)
    tables = [t for t in TABLES if t not in args.without]
    records = src.execute("SELECT count(*) FROM source_records").fetchone()[0]
    rows = {t: src.execute(f"SELECT * FROM {t} ORDER BY {ORDER.get(t, 'rowid')}").fetchall() for t in tables}
    ddl = {t: [r[0] for r in src.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type DESC", (t,))]
        for t in tables}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "floor.db"
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # the store's settings (cxbridge.store.engine)
        for t in tables:
            for statement in ddl[t]:
                db.execute(statement)
        inserts = {t: f"INSERT INTO {t} VALUES ({','.join('?' * len(rows[t][0]))})" for t in tables if rows[t]}
        per_record = {t: len(rows[t]) / records for t in tables}
        commit = 0.0
        started = time.process_time()
        for start in range(0, records, args.page):
            db.execute("BEGIN IMMEDIATE")
            for t in inserts:
                part = rows[t][int(start * per_record[t]) : int(min(records, start + args.page) * per_record[t])]
                db.executemany(inserts[t], sorted(part) if t == "identity_keys" else part)
            before = time.process_time()
            db.execute("COMMIT")
            commit += time.process_time() - before
        total = time.process_time() - started
        db.close()
        size = path.stat().st_size
    print(json.dumps({"records": records, "tables": tables, "us_per_record": round(total / records * 1e6, 1),
                      "commit_us_per_record": round(commit / records * 1e6, 1), "size_mib": round(size / 2**20)}))


if __name__ == "__main__":
    main()
