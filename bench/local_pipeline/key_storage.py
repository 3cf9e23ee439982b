"""How the identity keys' storage costs: replay the keys a finished run stored, in one of several layouts.

Reads every row of ``identity_keys`` from a store that ``run.py`` filled (three keys per record: email, phone,
ERP number) and inserts them again into a new file page by page -- each page's keys sorted, one transaction
per 1,000 records, the store's WAL settings -- timing only the inserts and commits. Layouts:

- ``text``: the schema's table (text key, source, stream, source id; ``WITHOUT ROWID``);
- ``narrow``: text key and source id only (what a record referenced by one column would cost);
- ``hash``: a 64-bit hash of the key instead of its text (every key then arrives in random order);
- ``global``: the schema's table with the keys sorted across the whole load (an order a sync never has: the
  cost of the emails' random order, by difference).

Usage: ``python key_storage.py STORE.db LAYOUT [--journal WAL|OFF] [--cache-kib N]``. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

PAGE = 1000
TABLES = {
    "text": "CREATE TABLE k (key VARCHAR(400), source VARCHAR(255), object_type VARCHAR(255), "
            "source_id VARCHAR(255), PRIMARY KEY (key, source, object_type, source_id)) WITHOUT ROWID",
    "narrow": "CREATE TABLE k (key VARCHAR(400), source_id VARCHAR(255), PRIMARY KEY (key, source_id)) "
              "WITHOUT ROWID",
    "hash": "CREATE TABLE k (h INTEGER, source VARCHAR(255), object_type VARCHAR(255), source_id VARCHAR(255), "
            "PRIMARY KEY (h, source, object_type, source_id)) WITHOUT ROWID",
}


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("layout", choices=["text", "narrow", "hash", "global"])
    parser.add_argument("--journal", default="WAL")
    parser.add_argument("--cache-kib", type=int, default=0)
    args = parser.parse_args()
    src = sqlite3.connect(args.store)
    rows = src.execute("SELECT key, source, object_type, source_id FROM identity_keys "
                       "ORDER BY cast(source_id as integer), key").fetchall()
    records = src.execute("SELECT count(*) FROM source_records").fetchone()[0]
    per_record = len(rows) / records
    data: list[tuple[Any, ...]]
    if args.layout == "narrow":
        data = [(r[0], r[3]) for r in rows]
    elif args.layout == "hash":
        data = [(_hash(r[0]), r[1], r[2], r[3]) for r in rows]
    else:
        data = list(rows)
    if args.layout == "global":
        data.sort()
    table = TABLES.get(args.layout, TABLES["text"])
    insert = f"INSERT INTO k VALUES ({','.join('?' * len(data[0]))})"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keys.db"
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(f"PRAGMA journal_mode = {args.journal}")
        db.execute("PRAGMA synchronous = NORMAL")
        if args.cache_kib:
            db.execute(f"PRAGMA cache_size = -{args.cache_kib}")
        db.execute(table)
        spent = 0.0
        for start in range(0, records, PAGE):
            part = sorted(data[int(start * per_record) : int(min(records, start + PAGE) * per_record)])
            began = time.process_time()
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert, part)
            db.execute("COMMIT")
            spent += time.process_time() - began
        db.close()
        size = path.stat().st_size
    print(json.dumps({"layout": args.layout, "journal": args.journal, "cache_kib": args.cache_kib,
                      "records": records, "keys": len(data), "us_per_record": round(spent / records * 1e6, 2),
                      "size_mib": round(size / 2**20, 1)}))


if __name__ == "__main__":
    main()
