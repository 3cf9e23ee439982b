"""The page reader thread: order, overlap, errors after the pages before them, early stop closes the reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from cxbridge.sync.prefetch import prefetched


def test_pages_arrive_in_order_and_the_next_is_read_while_the_current_is_applied() -> None:
    started: dict[int, threading.Event] = {i: threading.Event() for i in range(4)}
    threads: set[str] = set()

    def pages() -> Iterator[int]:
        for i in range(4):
            started[i].set()
            threads.add(threading.current_thread().name)
            yield i

    seen = []
    for page in prefetched(pages, name="reader-under-test"):
        if page < 3:
            # while we "apply" this page, the reader is already fetching the next one
            assert started[page + 1].wait(timeout=10)
        seen.append(page)
    assert seen == [0, 1, 2, 3]
    assert threads == {"reader-under-test"}


def test_reader_errors_come_after_the_pages_read_before_them() -> None:
    def pages() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("quota")

    seen = []
    with pytest.raises(RuntimeError, match="quota"):
        for page in prefetched(pages):
            seen.append(page)
    assert seen == [1, 2]


def test_stopping_early_closes_the_generator_in_the_reader_thread() -> None:
    closed = threading.Event()
    closer: list[str] = []

    def pages() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closer.append(threading.current_thread().name)
            closed.set()

    for page in prefetched(pages, name="reader"):
        if page == 2:
            break
    assert closed.wait(timeout=10)
    assert closer == ["reader"]


def test_adapters_with_local_reads_can_opt_out_of_the_reader_thread(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime
    from typing import Any

    from cxbridge.adapters import StreamInfo
    from cxbridge.testing.memory import MemoryAdapter, memory_setup

    class Recording(MemoryAdapter):
        threads: list[str]

        def read(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
            for page in super().read(*args, **kwargs):
                self.threads.append(threading.current_thread().name)
                yield page

    class LocalRecording(Recording):
        prefetch_pages = False

    at = datetime(2026, 1, 1, tzinfo=UTC)
    seen = {}
    for name, cls in (("threaded", Recording), ("local", LocalRecording)):
        adapter = cls(name, [StreamInfo("customers", "customers", "customer",
                                        default_mapping={"emails": "email"})], page_size=2)
        adapter.threads = []
        for i in range(5):
            adapter.put("customers", str(i), {"email": f"p{i}@{name}.test"}, modstamp=at)
        (run,) = memory_setup(sqlite_store, {name: adapter}).run([name])
        assert (run.status, run.records_read) == ("succeeded", 5)
        seen[name] = set(adapter.threads)
    assert seen["local"] == {threading.current_thread().name}
    assert seen["threaded"] and threading.current_thread().name not in seen["threaded"]
