"""kill -9 the sync at random points, restart, and the store equals the source exactly (SQLite and PostgreSQL).

The source is a local SQL CRM (SQLite file) with customers and orders; the sync runs as a real
``cxbridge sync`` subprocess with small pages. It is killed with SIGKILL as soon as the store shows a randomly
chosen amount of progress (so kills land mid-stream, between and inside page transactions), the source
changes between attempts (updates, soft deletes, new rows), and a final uninterrupted run must leave the
mirror, links and interactions equal to the source: nothing lost, nothing doubled.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cxbridge.store import Store
from cxbridge.store import schema as s

pytestmark = pytest.mark.slow

STAMP = "2024-03-01 10:{:02d}:{:02d}.000000"


def _stamp(n: int) -> str:
    return STAMP.format((n // 60) % 60, n % 60)


def make_source(path: Path, customers: int, rnd: random.Random) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT,
                                deleted INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total TEXT, at TEXT,
                             updated_at TEXT NOT NULL);
        """
    )
    for i in range(1, customers + 1):
        db.execute("INSERT INTO customers VALUES (?,?,?,?,0,?)",
                   (i, f"Person {i}", f"p{i}@example.com", f"+4930{1000000 + i}", _stamp(i // 7)))
        db.execute("INSERT INTO orders VALUES (?,?,?,?,?)",
                   (i, rnd.randint(1, i), f"{rnd.randint(1, 500)}.{rnd.randint(0, 99):02d}",
                    "2024-02-01T12:00:00Z", _stamp(i // 7)))
    db.commit()
    db.close()


def mutate(path: Path, rnd: random.Random, round_: int) -> None:
    """Updates, soft deletes and inserts, all stamped after everything before (as a CRM does)."""
    db = sqlite3.connect(path)
    top = db.execute("SELECT max(id) FROM customers").fetchone()[0]
    base = 4000 + round_ * 100
    for k, cid in enumerate(rnd.sample(range(1, top + 1), 25)):
        db.execute("UPDATE customers SET name = ?, updated_at = ? WHERE id = ?",
                   (f"Renamed {cid} r{round_}", _stamp(base + k % 10), cid))
    for cid in rnd.sample(range(1, top + 1), 5):
        db.execute("UPDATE customers SET deleted = 1, updated_at = ? WHERE id = ?", (_stamp(base + 11), cid))
    for j in range(1, 11):
        cid = top + j
        db.execute("INSERT INTO customers VALUES (?,?,?,?,0,?)",
                   (cid, f"New {cid}", f"p{cid}@example.com", f"+4930{1000000 + cid}", _stamp(base + 12)))
        db.execute("INSERT INTO orders VALUES (?,?,?,?,?)",
                   (cid, cid, "9.99", "2024-04-01T08:00:00Z", _stamp(base + 12)))
    db.commit()
    db.close()


def write_config(folder: Path, store_url: str, source: Path) -> Path:
    config = folder / "cxbridge.toml"
    config.write_text(
        f"""
[store]
url = "{store_url}"

[identity]
default_region = "DE"

[sync]
lookback_seconds = 0

[sources.crm]
adapter = "local-sql"

[sources.crm.connection]
url = "sqlite:///{source}"
page_size = 40

[sources.crm.connection.objects.customers]
table = "customers"
change_column = "updated_at"
soft_delete_column = "deleted"
deleted_value = 1
mapping = {{ full_name = "name", emails = "email", phones = "phone" }}

[sources.crm.connection.objects.orders]
table = "orders"
entity = "interaction"
change_column = "updated_at"
customer_ref_column = "customer_id"
customer_object = "customers"
mapping = {{ amount = "total", currency = "=EUR", type = "=purchase", occurred_at = "at" }}
"""
    )
    return config


def start_sync(config: Path, full: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CXBRIDGE_LOAD_PLUGINS": "cxbridge-local", "CXBRIDGE_CONFIG": str(config)}
    args = ["sync", "--no-writeback", *(["--full"] if full else [])]
    code = f"import sys; from cxbridge.cli import main; sys.exit(main({args!r}))"
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def records_read(store: Store, runs_before: int) -> int:
    """Records read (committed pages) by the runs started after the first ``runs_before`` runs."""
    try:
        with store.connect() as conn:
            rows = conn.execute(select(s.sync_runs.c.records_read).order_by(s.sync_runs.c.started_at)).all()
    except Exception:  # the schema may not exist yet while the first subprocess migrates it
        return 0
    return sum(r[0] for r in rows[runs_before:])


def run_count(store: Store) -> int:
    try:
        with store.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(s.sync_runs)).scalar_one())
    except Exception:
        return 0


def kill_at_progress(config: Path, store: Store, target: int, *, full: bool, timeout: float = 120) -> bool:
    """Run a sync and SIGKILL it once it committed pages of ``target`` records; False if it finished first."""
    before = run_count(store)
    proc = start_sync(config, full=full)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if records_read(store, before) >= target:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            if time.monotonic() > deadline:
                raise AssertionError("sync did not progress")
            time.sleep(0.005)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def check_store_equals_source(store: Store, source: Path) -> None:
    db = sqlite3.connect(source)
    live = {str(i): (n, e) for i, n, e in db.execute("SELECT id, name, email FROM customers WHERE deleted = 0")}
    gone = {str(i) for (i,) in db.execute("SELECT id FROM customers WHERE deleted = 1")}
    orders = {str(i): str(c) for i, c in db.execute("SELECT id, customer_id FROM orders")}
    db.close()
    sr, sl, it, cu = s.source_records, s.source_links, s.interactions, s.customers
    with store.connect() as conn:
        mirror = {r.source_id: r for r in conn.execute(select(sr).where(sr.c.object_type == "customers"))}
        links = dict(conn.execute(select(sl.c.source_id, sl.c.customer_id)
                                  .where(sl.c.object_type == "customers")).all())
        golden = {r.id: r for r in conn.execute(select(cu))}
        inter = list(conn.execute(select(it.c.source_id, it.c.customer_id, it.c.deleted)))
    live_mirror = {sid: (r.fields["name"], r.fields["email"]) for sid, r in mirror.items() if not r.deleted}
    assert live_mirror == live
    assert {sid for sid, r in mirror.items() if r.deleted} <= gone
    assert set(links) == set(live)  # exactly one link per live record, none for deleted ones
    assert len(golden) == len(live)  # distinct emails: one golden customer per live record, no duplicates
    assert {g.primary_email for g in golden.values()} == {e for _n, e in live.values()}
    for sid, cid in links.items():
        assert golden[cid].display_name == live[sid][0]
    assert sorted(i.source_id for i in inter) == sorted(orders)  # each order once
    for i in inter:
        ref = orders[i.source_id]
        assert i.customer_id == links.get(ref), (i.source_id, ref)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_minus_nine_and_restart_leaves_store_equal_to_source(
    tmp_path: Path, store_factory: Any, backend: str
) -> None:
    rnd = random.Random(1234)
    source = tmp_path / "crm.db"
    make_source(source, 1200, rnd)
    store = store_factory(backend)
    url = store.engine.url.render_as_string(hide_password=False)
    config = write_config(tmp_path, url, source)
    kills = 0
    for round_ in range(6):
        full = round_ > 0  # later rounds re-read everything (a --full run), so there is a long run to kill
        # alternate between kills in the customers stream (identity) and in the orders stream
        target = rnd.randint(40, 1000) if round_ % 2 == 0 else rnd.randint(1300, 2200)
        if kill_at_progress(config, store, target, full=full):
            kills += 1
        mutate(source, rnd, round_)
    assert kills >= 4  # the kills really interrupted syncs
    for _ in range(2):  # a clean run, then one more that must change nothing
        proc = start_sync(config)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    check_store_equals_source(store, source)
    with store.connect() as conn:
        last = conn.execute(select(s.sync_runs).order_by(s.sync_runs.c.started_at.desc()).limit(2)).all()
        interrupted = conn.execute(select(func.count()).select_from(s.sync_runs)
                                   .where(s.sync_runs.c.error.like("interrupted%"))).scalar_one()
    assert all(r.status == "succeeded" and r.records_changed == 0 for r in last)
    assert interrupted >= 4


def test_sigterm_finishes_the_current_page_commits_and_stops(tmp_path: Path, store_factory: Any) -> None:
    rnd = random.Random(99)
    source = tmp_path / "crm.db"
    make_source(source, 1200, rnd)
    store = store_factory("sqlite")
    config = write_config(tmp_path, store.engine.url.render_as_string(hide_password=False), source)
    proc = start_sync(config)
    deadline = time.monotonic() + 120
    while records_read(store, 0) < 200:
        assert proc.poll() is None and time.monotonic() < deadline, "sync ended before it could be stopped"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]  # a clean stop, not a crash
    with store.connect() as conn:
        stopped = conn.execute(select(s.sync_runs).where(s.sync_runs.c.status == "stopped")).one()
        cursor = conn.execute(select(s.cursors.c.cursor).where(s.cursors.c.stream == stopped.stream)).scalar_one()
        mirror = conn.execute(select(func.count()).select_from(s.source_records)
                              .where(s.source_records.c.object_type == stopped.stream)).scalar_one()
    assert "SIGTERM" in stopped.error
    assert stopped.records_read == stopped.pages * 40  # whole pages only
    assert stopped.cursor_after == cursor  # the last committed page's cursor
    assert mirror == stopped.records_read  # nothing beyond the committed pages
    proc = start_sync(config)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    check_store_equals_source(store, source)
