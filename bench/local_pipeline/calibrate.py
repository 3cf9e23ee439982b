"""A fixed CPU workload to tell how fast this machine is right now (shared CI hosts vary a lot).

Measures, per CPU-second and per wall-second: SQLite ``executemany`` upserts of JSON rows, ``phonenumbers``
parsing and JSON encoding. Run it next to ``run.py``: the ratio between a quiet machine's figures and the
current ones says how much of a slow benchmark result is the machine. Prints one JSON line.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path


def _measure(fn, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"per_wall_s": round(n / wall), "per_cpu_s": round(n / max(cpu, 1e-9))}


def main() -> None:
    import phonenumbers

    n = 20_000
    rows = [(str(i), json.dumps({"a": i, "b": "hello", "c": f"x{i}@example.com"}), "2024-01-01 00:00:00.000000")
            for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "c.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, data TEXT, ts TEXT)")

        def upserts() -> None:
            db.execute("BEGIN")
            sql = "INSERT INTO t VALUES (?,?,?) ON CONFLICT (id) DO UPDATE SET data = excluded.data"
            db.executemany(sql, rows)
            db.execute("COMMIT")

        result = {"sqlite_rows": _measure(upserts, n)}
        db.close()
    numbers = [f"030 {1000000 + i}" for i in range(5000)]
    result["phone_parses"] = _measure(lambda: [phonenumbers.parse(x, "DE") for x in numbers], len(numbers))
    docs = [{"first_name": "Ann", "emails": [f"a{i}@example.com"], "custom.x": i} for i in range(n)]
    enc = json.JSONEncoder(separators=(",", ":")).encode
    result["json_encodes"] = _measure(lambda: [enc(d) for d in docs], n)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
