"""The adapter contract suite: the behaviour every cxbridge adapter (first- or third-party) must show.

An adapter's test module implements an :class:`AdapterHarness` -- a small object that builds the adapter
against a fresh fake or real backend and changes data in that backend -- and gets the whole suite with one
line::

    from cxbridge.testing.contract import AdapterHarness, get_adapter_test_class

    class MyHarness(AdapterHarness):
        stream = "contacts"
        page_size = 5
        capabilities = frozenset({"tombstones", "write", "same_modstamp"})
        mutable_field = "firstname"
        writable_field = "cx_tier"

        def __init__(self, tmp_path): ...          # a fresh backend (fake API, database, folder)
        def make_adapter(self): ...                # a NEW adapter instance on that backend (a restart)
        def seed(self, n, *, modstamp=None): ...   # create n records, return their source ids in order
        def update(self, ids, fields): ...         # change fields; modstamps move forward
        def delete(self, ids): ...
        def read_back(self, object_type, source_id): ...  # the record's fields in the backend

    TestContract = get_adapter_test_class(harness=MyHarness)

What is checked (ARCHITECTURE §6): pagination (every record exactly once over several pages, cursors that
follow the documented ``(modstamp, id)`` semantics), incremental resume from a saved cursor after a
"crash" (nothing lost, duplicates only at the inclusive boundary), deletes (tombstones and/or id listing),
idempotent re-runs (same records, same content hashes), the write-back round trip with a failing op that
does not fail the others, many records sharing one timestamp across pages (no loop, no skip), and a cursor
from the future (no records, no crash). Tests whose capability the harness does not declare are skipped
with the reason.

Capabilities a harness may declare:

``tombstones``
    after :meth:`AdapterHarness.delete`, an incremental read yields ``deleted=True`` records.
``list_ids``
    :meth:`~cxbridge.adapters.Adapter.list_ids` lists live ids (delete reconciliation).
``write``
    :meth:`~cxbridge.adapters.Adapter.write` applies ``update`` ops; needs :attr:`AdapterHarness.writable_field`.
``same_modstamp``
    :meth:`AdapterHarness.seed` honours ``modstamp=`` so many records can share one timestamp.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from cxbridge.adapters import Adapter, AdapterContext, Cursor, Page, WriteOp
from cxbridge.models import SourceRecord
from cxbridge.sources import DictState

__all__ = [
    "AdapterContractSuite",
    "AdapterHarness",
    "CursorLoop",
    "drain",
    "get_adapter_test_class",
    "make_test_context",
]


class CursorLoop(AssertionError):
    """An adapter returned the same cursor again without progress (it would loop forever)."""


# --------------------------------------------------------------------------------------------------------------
# Helpers usable on their own
# --------------------------------------------------------------------------------------------------------------


class _Unlimited:
    def acquire(self, cost: int = 1) -> None:
        return None


def _http(**kwargs: Any) -> Any:
    from cxbridge.http import build_client

    return build_client(**kwargs)


def make_test_context(
    source: str = "contract", *, now: Callable[[], datetime] | None = None, secrets: Sequence[str] = ()
) -> AdapterContext:
    """An :class:`AdapterContext` for tests: in-memory state, no rate budget, no sleeping."""
    return AdapterContext(
        source=source,
        http=_http,
        state=DictState(),
        budget_factory=lambda key, limit, period: _Unlimited(),
        sleep=lambda seconds: None,
        now=now or (lambda: datetime.now(UTC)),
        secrets=tuple(secrets),
    )


def drain(
    adapter: Adapter, stream: str, cursor: Cursor | None = None, *, full: bool = False, max_pages: int = 10_000
) -> tuple[list[SourceRecord], Cursor, list[Page]]:
    """Read ``stream`` to the end from ``cursor``.

    :returns: ``(records, last_cursor, pages)``; ``last_cursor`` is ``cursor`` when no page came back.
    :raises CursorLoop: a page repeated the previous cursor while carrying records, or more than
        ``max_pages`` pages came back (the adapter would loop).
    """
    position = cursor or Cursor()
    records: list[SourceRecord] = []
    pages: list[Page] = []
    for page in adapter.read(stream, position, full=full):
        if pages and page.records and page.cursor == pages[-1].cursor:
            raise CursorLoop(f"stream {stream!r}: cursor {page.cursor} repeated after a page of records")
        pages.append(page)
        records.extend(page.records)
        position = page.cursor
        if len(pages) > max_pages:
            raise CursorLoop(f"stream {stream!r}: more than {max_pages} pages; the adapter does not terminate")
    return records, position, pages


def _take(adapter: Adapter, stream: str, cursor: Cursor, n_pages: int) -> tuple[list[SourceRecord], Cursor]:
    """Read ``n_pages`` pages, then abandon the read (what a crash after committing them looks like)."""
    gen: Iterator[Page] = adapter.read(stream, cursor)
    records: list[SourceRecord] = []
    position = cursor
    taken = 0
    try:
        for page in gen:
            records.extend(page.records)
            position = page.cursor
            taken += 1
            if taken == n_pages:
                break
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            close()
    return records, position


# --------------------------------------------------------------------------------------------------------------
# The harness an adapter's tests implement
# --------------------------------------------------------------------------------------------------------------


class AdapterHarness:
    """What an adapter's test module provides to the contract suite (subclass it; see the module docs).

    The suite builds one harness per test by calling the harness class (or factory) with ``tmp_path``; a
    harness that needs a server it cannot reach calls ``pytest.skip("<reason>")`` in its constructor.

    :cvar stream: the stream under test.
    :cvar page_size: the page size the harness configures the adapter with (keep it small: 3-10).
    :cvar capabilities: see the module docs.
    :cvar cursor_kind: ``modstamp`` (documented ``(modstamp, id)`` cursors) or ``state`` (the position lives
        in :attr:`Cursor.state`, e.g. processed files).
    :cvar mutable_field: a record field :meth:`update` can change (as it appears in ``record.fields``).
    :cvar writable_field: a field write-back may set (for the ``write`` capability).
    """

    stream: ClassVar[str] = ""
    page_size: ClassVar[int] = 5
    capabilities: ClassVar[frozenset[str]] = frozenset()
    cursor_kind: ClassVar[Literal["modstamp", "state"]] = "modstamp"
    mutable_field: ClassVar[str] = "name"
    writable_field: ClassVar[str | None] = None

    def make_adapter(self) -> Adapter:
        """A new adapter instance on this harness's backend (called again to simulate a restart)."""
        raise NotImplementedError

    def seed(self, n: int, *, modstamp: datetime | None = None) -> list[str]:
        """Create ``n`` records (all with ``modstamp`` when given) and return their source ids."""
        raise NotImplementedError

    def update(self, ids: Sequence[str], fields: Mapping[str, Any]) -> None:
        """Change ``fields`` of the records; their modstamps move past every earlier one."""
        raise NotImplementedError

    def delete(self, ids: Sequence[str]) -> None:
        """Delete the records in the backend (soft or hard, as the adapter's CRM would)."""
        raise NotImplementedError

    def read_back(self, object_type: str, source_id: str) -> Mapping[str, Any]:
        """The record's current fields in the backend (to verify write-back)."""
        raise NotImplementedError

    def bad_write_ops(self, object_type: str) -> list[WriteOp]:
        """Ops that must fail (``ok=False``) without failing the rest of their batch."""
        field = self.writable_field or self.mutable_field
        return [
            WriteOp(
                key="bad-missing-record",
                object_type=object_type,
                action="update",
                source_id=f"missing-{uuid.uuid4().hex[:8]}",
                fields={field: "x"},
            )
        ]

    def close(self) -> None:
        """Release the backend (drop tables, stop fakes)."""


# --------------------------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------------------------


def _ids(records: Sequence[SourceRecord]) -> list[str]:
    return [r.source_id for r in records]


class AdapterContractSuite:
    """The contract tests; use :func:`get_adapter_test_class` rather than subclassing by hand."""

    harness_factory: ClassVar[Callable[[Path], AdapterHarness]]

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[AdapterHarness]:
        h = type(self).harness_factory(tmp_path)
        try:
            yield h
        finally:
            h.close()

    @staticmethod
    def _require(h: AdapterHarness, capability: str) -> None:
        if capability not in h.capabilities:
            pytest.skip(f"harness {type(h).__name__} does not declare the {capability!r} capability")

    @staticmethod
    def _object_type(adapter: Adapter, stream: str) -> str:
        for info in adapter.streams():
            if info.name == stream:
                return info.object_type
        raise AssertionError(f"adapter does not offer stream {stream!r}: {[s.name for s in adapter.streams()]}")

    # ------------------------------------------------------------------------------------------------- tests

    def test_stream_is_declared(self, harness: AdapterHarness) -> None:
        adapter = harness.make_adapter()
        try:
            object_type = self._object_type(adapter, harness.stream)
            assert object_type
        finally:
            adapter.close()

    def test_empty_source_reads_nothing(self, harness: AdapterHarness) -> None:
        adapter = harness.make_adapter()
        try:
            records, _, _ = drain(adapter, harness.stream)
        finally:
            adapter.close()
        assert records == []

    def test_pagination_every_record_once(self, harness: AdapterHarness) -> None:
        size = harness.page_size
        n = 2 * size + size // 2 + 1
        seeded = harness.seed(n)
        adapter = harness.make_adapter()
        try:
            records, _, pages = drain(adapter, harness.stream)
            object_type = self._object_type(adapter, harness.stream)
        finally:
            adapter.close()
        ids = _ids(records)
        assert sorted(ids) == sorted(seeded), "every record exactly once"
        assert len([p for p in pages if p.records]) >= 3, f"{n} records with page size {size} need 3+ pages"
        assert all(len(p.records) <= size for p in pages), "no page larger than the page size"
        assert all(r.object_type == object_type and not r.deleted for r in records)
        if harness.cursor_kind == "modstamp":
            stamps = [r.modstamp for r in records]
            assert None not in stamps, "modstamp-ordered streams stamp every record"
            assert stamps == sorted(stamps), "records come in modstamp order"  # type: ignore[type-var]
            for page in pages:
                if page.records:
                    last = page.records[-1]
                    assert (page.cursor.modstamp, page.cursor.last_id) == (last.modstamp, last.source_id), (
                        "a page's cursor is the (modstamp, id) of its last record"
                    )
        else:
            cursors = [p.cursor for p in pages]
            assert all(a != b for a, b in itertools.pairwise(cursors)), "every page moves the cursor"

    def test_incremental_resume_after_crash(self, harness: AdapterHarness) -> None:
        size = harness.page_size
        seeded = harness.seed(3 * size + 2)
        adapter = harness.make_adapter()
        try:
            first, saved = _take(adapter, harness.stream, Cursor(), 2)
        finally:
            adapter.close()  # the "crash": pages 1-2 were committed with ``saved``
        assert len(first) >= 2
        read_before = set(_ids(first))
        unread = [i for i in seeded if i not in read_before]
        assert unread, "the harness's page size must leave records unread after two pages"
        changed = [first[0].source_id, unread[-1]]
        value = f"changed-{uuid.uuid4().hex[:8]}"
        harness.update(changed, {harness.mutable_field: value})

        adapter = harness.make_adapter()  # the restart
        try:
            after, _, _ = drain(adapter, harness.stream, saved)
        finally:
            adapter.close()
        got = _ids(after)
        assert set(read_before) | set(got) == set(seeded), "nothing lost across the crash"
        assert set(changed) <= set(got), "changes made after the saved cursor are read"
        latest = {r.source_id: r for r in after}
        for sid in changed:
            assert latest[sid].fields.get(harness.mutable_field) == value, f"{sid} carries the new value"
        again = [r for r in after if r.source_id in read_before and r.source_id not in changed]
        if harness.cursor_kind == "modstamp":
            assert all(r.modstamp == saved.modstamp for r in again), (
                "only records at the cursor's (inclusive) modstamp may be read twice"
            )
        else:
            assert again == [], "state cursors resume exactly"
        versions = [(r.source_id, r.hash()) for r in after]
        assert len(versions) == len(set(versions)), "no record version twice within one run"

    def test_rerun_from_same_cursor_is_idempotent(self, harness: AdapterHarness) -> None:
        harness.seed(2 * harness.page_size + 1)
        adapter = harness.make_adapter()
        try:
            _, middle = _take(adapter, harness.stream, Cursor(), 1)
        finally:
            adapter.close()
        runs = []
        for _ in range(2):
            adapter = harness.make_adapter()
            try:
                records, last, _ = drain(adapter, harness.stream, middle)
            finally:
                adapter.close()
            runs.append(([(r.source_id, r.hash()) for r in records], last))
        assert runs[0][0], "records after the first page"
        assert runs[0][0] == runs[1][0], "same records with the same content hashes"
        assert runs[0][1] == runs[1][1], "same final cursor"

    def test_deletes_are_visible(self, harness: AdapterHarness) -> None:
        if not ({"tombstones", "list_ids"} & harness.capabilities):
            pytest.skip(f"harness {type(harness).__name__} declares neither 'tombstones' nor 'list_ids'")
        seeded = harness.seed(harness.page_size + 2)
        adapter = harness.make_adapter()
        try:
            _, cursor, _ = drain(adapter, harness.stream)
        finally:
            adapter.close()
        gone = [seeded[0], seeded[-1]]
        harness.delete(gone)
        adapter = harness.make_adapter()
        try:
            if "tombstones" in harness.capabilities:
                after, _, _ = drain(adapter, harness.stream, cursor)
                tombstones = {r.source_id for r in after if r.deleted}
                assert tombstones == set(gone), "a tombstone for each deleted record, none for others"
            if "list_ids" in harness.capabilities:
                live = list(adapter.list_ids(harness.stream))
                assert sorted(live) == sorted(set(seeded) - set(gone)), "id listing shows the gap"
                assert len(live) == len(set(live))
        finally:
            adapter.close()

    def test_write_back_round_trip(self, harness: AdapterHarness) -> None:
        self._require(harness, "write")
        field = harness.writable_field
        assert field, "the 'write' capability needs writable_field"
        seeded = harness.seed(3)
        adapter = harness.make_adapter()
        try:
            object_type = self._object_type(adapter, harness.stream)
            good = [
                WriteOp(
                    key=f"op-{i}",
                    object_type=object_type,
                    action="update",
                    source_id=sid,
                    fields={field: f"tier-{i}"},
                )
                for i, sid in enumerate(seeded)
            ]
            bad = harness.bad_write_ops(object_type)
            ops = [good[0], *bad, *good[1:]]
            assert len(ops) <= adapter.write_batch_size
            results = adapter.write(ops)
        finally:
            adapter.close()
        by_key = {r.key: r for r in results}
        assert sorted(by_key) == sorted(op.key for op in ops), "one result per op, keyed by the op's key"
        for op in good:
            assert by_key[op.key].ok, f"{op.key} failed: {by_key[op.key].error}"
        for op in bad:
            assert not by_key[op.key].ok and by_key[op.key].error, f"{op.key} must fail with a reason"
        for i, sid in enumerate(seeded):
            assert harness.read_back(object_type, sid).get(field) == f"tier-{i}"

    def test_many_records_sharing_one_modstamp(self, harness: AdapterHarness) -> None:
        self._require(harness, "same_modstamp")
        size = harness.page_size
        stamp = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
        seeded = harness.seed(3 * size + 1, modstamp=stamp)
        adapter = harness.make_adapter()
        try:
            records, _, _ = drain(adapter, harness.stream)
            assert sorted(_ids(records)) == sorted(seeded), "no loop, no skip"
            first, saved = _take(adapter, harness.stream, Cursor(), 1)
            rest, _, _ = drain(adapter, harness.stream, saved)
        finally:
            adapter.close()
        assert set(_ids(first)) | set(_ids(rest)) == set(seeded), "resuming inside the timestamp loses nothing"
        assert len(_ids(rest)) == len(set(_ids(rest)))

    def test_cursor_from_the_future_reads_nothing(self, harness: AdapterHarness) -> None:
        harness.seed(harness.page_size + 1)
        future = datetime.now(UTC) + timedelta(days=3650)
        adapter = harness.make_adapter()
        try:
            if harness.cursor_kind == "modstamp":
                cursor = Cursor(modstamp=future, last_id=None)
            else:
                _, done, _ = drain(adapter, harness.stream)
                cursor = Cursor(modstamp=future, last_id=done.last_id, state=done.state)
            records, last, _ = drain(adapter, harness.stream, cursor)
        finally:
            adapter.close()
        assert records == []
        assert last == cursor, "an empty read leaves the cursor where it was"


def get_adapter_test_class(
    *, harness: Callable[[Path], AdapterHarness], name: str | None = None, skip: Sequence[str] = ()
) -> type:
    """Build the contract test class for an adapter.

    :param harness: an :class:`AdapterHarness` subclass (or any callable ``(tmp_path) -> harness``).
    :param name: class name shown in test ids (default ``Test<Harness>Contract``).
    :param skip: test names to leave out (document why in the calling module).
    :returns: a pytest test class; assign it to a ``Test*`` name in a test module.
    """
    label = name or f"Test{getattr(harness, '__name__', 'Adapter')}Contract"
    namespace: dict[str, Any] = {"harness_factory": staticmethod(harness), "__test__": True}
    for test in skip:
        if not hasattr(AdapterContractSuite, test):
            raise ValueError(f"unknown contract test {test!r}")

        def _skipped(self: Any, test: str = test) -> None:
            pytest.skip(f"{test} skipped by the adapter's test module")

        namespace[test] = _skipped
    return type(label, (AdapterContractSuite,), namespace)
