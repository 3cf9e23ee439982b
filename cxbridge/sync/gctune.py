"""Cyclic garbage collection tuned for the duration of sync runs.

A page allocates hundreds of thousands of short-lived containers (rows, patches, records); nearly all of
them are freed by reference counting, yet every 700 net allocations CPython's cyclic collector runs, and
its older generations walk every live object of the process (SQLAlchemy, pydantic, loaded modules). On
the local pipeline benchmark that was a quarter of the CPU (measured: 7,600 -> 9,700 records per
CPU-second with the collector tuned as here).

While at least one sync run is active, the first-generation threshold is raised to
:data:`GEN0_THRESHOLD`; the collector still runs (cycles are still freed, so memory stays flat -- garbage
cycles wait at most one threshold's worth of allocations, a few MiB) and the previous thresholds are
restored when the last concurrent run ends. Processes that set their own thresholds keep them: a threshold
already above ours is left alone.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["GEN0_THRESHOLD", "relaxed_gc"]

#: allocations between first-generation collections during sync runs (CPython's default is 700)
GEN0_THRESHOLD = 50_000

_lock = threading.Lock()
_active = 0
_saved: tuple[int, ...] | None = None


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """Raise the collector's first threshold while the block runs (reentrant, thread-safe)."""
    global _active, _saved
    with _lock:
        if _active == 0:
            current = gc.get_threshold()
            if 0 < current[0] < GEN0_THRESHOLD:
                _saved = current
                gc.set_threshold(GEN0_THRESHOLD, *current[1:])
            else:  # disabled (0) or already higher: not ours to change
                _saved = None
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                # restore only if nobody else changed it in the meantime
                if gc.get_threshold()[0] == GEN0_THRESHOLD:
                    gc.set_threshold(*_saved)
                _saved = None
