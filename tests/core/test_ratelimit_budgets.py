"""Pacing: the in-process token bucket and the database-shared budget (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine

from cxbridge.ratelimit import SqlRateBudget, TokenBucket, budget_factory
from cxbridge.store.schema import rate_budgets

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds


# ----------------------------------------------------------------------------------------------------------
# TokenBucket
# ----------------------------------------------------------------------------------------------------------


def test_token_bucket_sleep_schedule() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(10, 1.0, burst=4, clock=clock, sleep=clock.sleep)
    sent: list[float] = []
    for _ in range(10):
        bucket.acquire()
        sent.append(clock.now)
    # 4 at once, then one every 1/(10-4) s
    assert clock.sleeps == pytest.approx([1 / 6] * 6)
    assert sent == pytest.approx([0, 0, 0, 0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])


def test_token_bucket_never_exceeds_limit_in_any_rolling_window() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(100, 10.0, clock=clock, sleep=clock.sleep)  # HubSpot: 100 per rolling 10 s
    sent: list[float] = []
    for i in range(1000):
        if i % 250 == 0:
            clock.now += 30  # idle spells refill the bucket: bursts happen
        bucket.acquire()
        sent.append(clock.now)
    for i, start in enumerate(sent):
        in_window = sum(1 for t in sent[i:] if t < start + 10.0 - 1e-9)
        assert in_window <= 100
    # sustained rate over the last busy stretch: >= 90 % of the limit
    busy = sent[750:]
    rate = (len(busy) - 1) / (busy[-1] - busy[0])
    assert rate >= 0.9 * 10


def test_token_bucket_is_thread_safe() -> None:
    clock = FakeClock(0.0)  # time never moves: every reservation must get its own slot
    waits: list[float] = []
    bucket = TokenBucket(10, 1.0, burst=1, clock=clock, sleep=waits.append)

    def worker() -> None:
        for _ in range(25):
            bucket.acquire()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 100 acquisitions: the first free, then slots k/9 s for k = 1..99, each handed out exactly once
    assert sorted(waits) == pytest.approx([k / 9 for k in range(1, 100)])


def test_token_bucket_rejects_impossible_costs() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1)
    with pytest.raises(ValueError):
        TokenBucket(10, 1, burst=2).acquire(3)


def test_budget_factory_shares_budget_per_key() -> None:
    make = budget_factory()
    assert make("hubspot:1", 100, 10) is make("hubspot:1", 100, 10)
    assert make("hubspot:1", 100, 10) is not make("hubspot:2", 100, 10)
    assert isinstance(make("x", 5, 1), TokenBucket)


# ----------------------------------------------------------------------------------------------------------
# SqlRateBudget on SQLite and PostgreSQL
# ----------------------------------------------------------------------------------------------------------


def _sqlite(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'budget.db'}", connect_args={"timeout": 30})
    rate_budgets.create(engine)
    yield engine
    engine.dispose()


def _postgres() -> Iterator[Engine]:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3).close()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL not reachable on 127.0.0.1:5432: {exc}")
    schema = f"cx_rl_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"}, pool_size=8)
    rate_budgets.create(engine)
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from (_sqlite(tmp_path) if request.param == "sqlite" else _postgres())


def used(engine: Engine, key: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(rate_budgets.c.window_start, rate_budgets.c.used).where(rate_budgets.c.key == key)
        ).one()


def test_sql_budget_waits_for_next_window(engine: Engine) -> None:
    clock = FakeClock(1003.0)
    budget = SqlRateBudget(engine, "crm:acct", 3, 10.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        budget.acquire()
    assert clock.sleeps == [] and tuple(used(engine, "crm:acct")) == (1000.0, 3)
    budget.acquire()  # window 1000-1010 is full: wait 7 s for the next one
    assert clock.sleeps == [7.0]
    assert tuple(used(engine, "crm:acct")) == (1010.0, 1)


def test_sql_budget_shared_by_concurrent_workers_never_exceeds_limit(engine: Engine) -> None:
    clock = FakeClock(4980.0)  # frozen at the start of a 60 s window
    results: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def worker() -> None:
        budget = SqlRateBudget(engine, "shared", 15, 60.0, clock=clock)
        barrier.wait()
        for _ in range(10):
            wait = budget.try_acquire()
            with lock:
                results.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40
    assert results.count(0.0) == 15  # exactly the limit granted, the rest told to wait
    assert all(w == pytest.approx(60.0) for w in results if w)
    assert used(engine, "shared").used == 15


def test_sql_budget_factory_on_engine(engine: Engine) -> None:
    make = budget_factory(engine=engine, clock=FakeClock(0.0), sleep=lambda s: None)
    budget = make("a", 2, 1.0)
    assert isinstance(budget, SqlRateBudget) and make("a", 2, 1.0) is budget
    budget.acquire(2)
    assert used(engine, "a").used == 2


_WORKER = """
import sys
from sqlalchemy import create_engine
from cxbridge.ratelimit import SqlRateBudget
url, schema = sys.argv[1], sys.argv[2]
engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
budget = SqlRateBudget(engine, "procs", 25, 60.0, clock=lambda: 6000.0)
print(sum(1 for _ in range(20) if budget.try_acquire() == 0.0))
"""


@pytest.mark.postgres
def test_sql_budget_shared_by_processes() -> None:
    """Workers on several hosts share a PostgreSQL budget: separate processes never exceed it together."""
    import subprocess
    import sys

    gen = _postgres()
    engine = next(gen)
    url = engine.url.render_as_string(hide_password=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, _search_path(engine)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        granted = [int(p.communicate(timeout=60)[0].strip()) for p in procs]
        assert all(p.returncode == 0 for p in procs)
        assert sum(granted) == 25  # 40 attempts from 2 processes, exactly the limit granted
        assert used(engine, "procs").used == 25
    finally:
        for _ in gen:  # drop the schema
            pass


def _search_path(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SHOW search_path")).scalar_one())
