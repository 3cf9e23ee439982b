"""Request budgets (pacing): stay below a vendor's published rate limits instead of collecting 429s.

Two implementations of :class:`cxbridge.adapters.RateBudget`:

- :class:`TokenBucket` -- in-process and thread-safe, for one process (the embedded daemon, the CLI). Callers
  reserve their slot under a lock and sleep outside it, so waiting threads queue fairly without busy loops.
- :class:`SqlRateBudget` -- shared by every process and host through the store's ``rate_budgets`` table
  (workers on many machines, ARCHITECTURE §7). A slot is taken with one atomic
  ``UPDATE ... SET used = used + cost WHERE key = :key AND window_start = :window AND used + cost <= :limit``,
  so concurrent workers never overshoot, on SQLite and PostgreSQL alike.

:func:`budget_factory` builds the ``(key, limit, period) -> RateBudget`` callable given to adapters
(:attr:`cxbridge.adapters.AdapterContext.budget_factory`): one budget per key per process, or per database.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Engine

    from .adapters import RateBudget

__all__ = ["SqlRateBudget", "TokenBucket", "budget_factory"]

log = logging.getLogger(__name__)


class TokenBucket:
    """At most ``limit`` acquisitions in any rolling window of ``period`` seconds, in one process.

    A classic token bucket guarantees ``capacity + rate * period`` per window, which would overshoot a
    vendor's rolling window (HubSpot counts the last ten seconds) if the bucket started full and refilled at
    ``limit / period``. So the bucket holds ``burst`` tokens and refills at ``(limit - burst) / period``: any
    window of ``period`` seconds sees at most ``burst + (limit - burst) = limit`` calls, and the sustained
    rate is ``1 - burst / limit`` of the limit (95 % with the default burst of ``limit // 20``).

    :param limit: requests allowed per ``period``.
    :param period: window length in seconds.
    :param burst: requests that may go at once after an idle spell (default ``max(1, limit // 20)``).
    :param clock: monotonic seconds (tests pass a fake clock).
    :param sleep: how to wait (tests pass a recorder that advances the fake clock).
    """

    def __init__(
        self,
        limit: int,
        period: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or period <= 0:
            raise ValueError("limit must be >= 1 and period > 0")
        burst = max(1, limit // 20) if burst is None else burst
        if not 1 <= burst <= limit:
            raise ValueError("burst must be between 1 and limit")
        self.limit = limit
        self.period = float(period)
        self.burst = burst
        # With limit == burst (e.g. limit 1) there is nothing left to refill with; fall back to limit / period,
        # which keeps the long-run rate and allows at most one extra call at a window's edge.
        self.rate = (limit - burst) / self.period if limit > burst else limit / self.period
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._stamp = clock()
        self.waited = 0.0

    def reserve(self, cost: int = 1) -> float:
        """Take ``cost`` tokens now (possibly going into debt) and return how long the caller must wait."""
        if cost < 1:
            return 0.0
        if cost > self.burst:
            raise ValueError(f"cost {cost} exceeds the bucket's burst size {self.burst}")
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= cost
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate

    def acquire(self, cost: int = 1) -> None:
        """Block until ``cost`` requests may be sent."""
        wait = self.reserve(cost)
        if wait > 0:
            self.waited += wait
            self._sleep(wait)


class SqlRateBudget:
    """A budget of ``limit`` calls per fixed window of ``period`` seconds, shared through a database table.

    Windows are aligned to the epoch (``window_start = floor(now / period) * period``). Because fixed windows
    let a burst at the end of one window meet a burst at the start of the next, pass a ``limit`` with headroom
    for vendors that count rolling windows (or a shorter ``period`` with a proportional limit).

    :param engine: a SQLAlchemy engine on the store (SQLite or PostgreSQL).
    :param key: the budget's name, e.g. ``hubspot:portal-123:ten-secondly``.
    :param limit: calls per window.
    :param period: window length in seconds.
    :param table: the ``rate_budgets`` table (default :data:`cxbridge.store.schema.rate_budgets`).
    :param clock: wall-clock seconds (shared across hosts, so not monotonic).
    :param sleep: how to wait.
    """

    def __init__(
        self,
        engine: Engine,
        key: str,
        limit: int,
        period: float,
        *,
        table: Table | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or period <= 0:
            raise ValueError("limit must be >= 1 and period > 0")
        if table is None:
            from .store.schema import rate_budgets

            table = rate_budgets
        self.engine = engine
        self.key = key
        self.limit = limit
        self.period = float(period)
        self.table = table
        self._clock = clock
        self._sleep = sleep
        self.waited = 0.0

    def _window(self, now: float) -> float:
        return math.floor(now / self.period) * self.period

    def try_acquire(self, cost: int = 1) -> float:
        """Take ``cost`` calls from the current window if they fit; return 0, else the seconds to wait."""
        from sqlalchemy import insert, update
        from sqlalchemy.exc import IntegrityError

        if cost > self.limit:
            raise ValueError(f"cost {cost} exceeds the budget's limit {self.limit}")
        now = self._clock()
        window = self._window(now)
        t = self.table
        with self.engine.begin() as conn:
            took = conn.execute(
                update(t)
                .where(t.c.key == self.key, t.c.window_start == window, t.c.used + cost <= self.limit)
                .values(used=t.c.used + cost)
            ).rowcount
            if took:
                return 0.0
            # A new window: the first worker to get here resets the row (older windows only).
            took = conn.execute(
                update(t)
                .where(t.c.key == self.key, t.c.window_start < window)
                .values(window_start=window, used=cost)
            ).rowcount
            if took:
                return 0.0
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(t).values(key=self.key, window_start=window, used=cost))
            return 0.0
        except IntegrityError:
            pass  # the row exists and this window is full (or another worker just created it)
        # Re-check once: the other worker may have created the row with room left.
        with self.engine.begin() as conn:
            took = conn.execute(
                update(t)
                .where(t.c.key == self.key, t.c.window_start == window, t.c.used + cost <= self.limit)
                .values(used=t.c.used + cost)
            ).rowcount
        if took:
            return 0.0
        return max(window + self.period - now, 0.001)

    def acquire(self, cost: int = 1) -> None:
        """Block until ``cost`` calls fit in a window, then take them."""
        while True:
            wait = self.try_acquire(cost)
            if wait <= 0:
                return
            self.waited += wait
            log.debug("rate budget %s exhausted; waiting %.2fs", self.key, wait)
            self._sleep(wait)


def budget_factory(
    *,
    engine: Engine | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] | None = None,
    table: Any = None,
) -> Callable[[str, int, float], RateBudget]:
    """The ``(key, limit, period) -> RateBudget`` callable for :class:`~cxbridge.adapters.AdapterContext`.

    The same key returns the same budget object for the factory's lifetime, so every stream of one account
    shares it. With ``engine`` the budgets are :class:`SqlRateBudget` (shared by every process using that
    database), else :class:`TokenBucket`.
    """
    budgets: dict[tuple[str, int, float], RateBudget] = {}
    lock = threading.Lock()

    def make(key: str, limit: int, period: float) -> RateBudget:
        with lock:
            ident = (key, int(limit), float(period))
            budget = budgets.get(ident)
            if budget is None:
                if engine is not None:
                    budget = SqlRateBudget(
                        engine, key, limit, period, table=table, clock=clock or time.time, sleep=sleep
                    )
                else:
                    budget = TokenBucket(limit, period, clock=clock or time.monotonic, sleep=sleep)
                budgets[ident] = budget
            return budget

    return make
