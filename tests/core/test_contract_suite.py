"""The adapter contract suite itself: it passes a correct adapter and catches the classic cursor bugs.

A small in-memory CRM adapter with switchable defects stands in for a real one: ties skipped at a page
boundary (``>`` instead of the ``(modstamp, id)`` keyset), a cursor that never moves (endless loop), deletes
that vanish silently, and a write that fails the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cxbridge.adapters import Adapter, Cursor, Page, StreamInfo, WriteOp, WriteResult
from cxbridge.models import SourceRecord
from cxbridge.testing.contract import (
    AdapterHarness,
    CursorLoop,
    drain,
    get_adapter_test_class,
    make_test_context,
)


class _Crm:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.clock = datetime(2024, 1, 1, tzinfo=UTC)
        self.next_id = 0

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock


class MemoryCrmAdapter(Adapter):
    capabilities = frozenset({"write", "list_ids"})

    def __init__(self, crm: _Crm, page_size: int, bug: str = "") -> None:
        super().__init__(None, make_test_context("mem"))  # type: ignore[arg-type]
        self.crm, self.page_size, self.bug = crm, page_size, bug

    def streams(self) -> list[StreamInfo]:
        return [StreamInfo("contacts", "contact", "customer")]

    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Iterator[Page]:
        def after(key: tuple[datetime, int]) -> bool:
            if cursor.modstamp is None:
                return True
            if self.bug == "skip_ties":
                return key[0] > cursor.modstamp
            return key > (cursor.modstamp, int(cursor.last_id or 0))

        rows = sorted(((r["modstamp"], int(sid)), sid) for sid, r in self.crm.rows.items())
        rows = [(k, sid) for k, sid in rows if after(k)]
        if self.bug == "hard_delete":
            rows = [(k, sid) for k, sid in rows if not self.crm.rows[sid].get("gone")]
        for start in range(0, len(rows), self.page_size):
            chunk = rows[start : start + self.page_size]
            records = [
                SourceRecord(
                    source="mem",
                    object_type="contact",
                    source_id=sid,
                    modstamp=key[0],
                    fields=dict(self.crm.rows[sid]["fields"]),
                    deleted=bool(self.crm.rows[sid].get("gone")),
                )
                for key, sid in chunk
            ]
            last = chunk[-1][0]
            page_cursor = cursor if self.bug == "stuck" else Cursor(modstamp=last[0], last_id=str(last[1]))
            yield Page(records, page_cursor)

    def list_ids(self, stream: str) -> Iterator[str]:
        return iter(sid for sid, r in self.crm.rows.items() if not r.get("gone"))

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        if self.bug == "batch_fails" and any(op.source_id not in self.crm.rows for op in ops):
            return [WriteResult(op.key, False, op.source_id, "batch rejected") for op in ops]
        out = []
        for op in ops:
            row = self.crm.rows.get(op.source_id or "")
            if row is None:
                out.append(WriteResult(op.key, False, op.source_id, "not found"))
                continue
            row["fields"].update(op.fields)
            row["modstamp"] = self.crm.tick()
            out.append(WriteResult(op.key, True, op.source_id))
        return out


class MemoryHarness(AdapterHarness):
    stream = "contacts"
    page_size = 3
    capabilities = frozenset({"tombstones", "list_ids", "write", "same_modstamp"})
    mutable_field = "name"
    writable_field = "tier"
    bug = ""

    def __init__(self, tmp_path: Path) -> None:
        self.crm = _Crm()

    def make_adapter(self) -> Adapter:
        return MemoryCrmAdapter(self.crm, self.page_size, self.bug)

    def seed(self, n: int, *, modstamp: datetime | None = None) -> list[str]:
        ids = []
        for _ in range(n):
            self.crm.next_id += 1
            sid = str(self.crm.next_id)
            self.crm.rows[sid] = {"modstamp": modstamp or self.crm.tick(), "fields": {"name": f"n{sid}"}}
            ids.append(sid)
        return ids

    def update(self, ids: Sequence[str], fields: Mapping[str, Any]) -> None:
        for sid in ids:
            self.crm.rows[sid]["fields"].update(fields)
            self.crm.rows[sid]["modstamp"] = self.crm.tick()

    def delete(self, ids: Sequence[str]) -> None:
        for sid in ids:
            self.crm.rows[sid]["gone"] = True
            self.crm.rows[sid]["modstamp"] = self.crm.tick()

    def read_back(self, object_type: str, source_id: str) -> Mapping[str, Any]:
        return self.crm.rows[source_id]["fields"]


TestMemoryContract = get_adapter_test_class(harness=MemoryHarness)


def _run(bug: str, test: str, tmp_path: Path, **attrs: Any) -> None:
    harness_cls = type(f"{bug}Harness", (MemoryHarness,), {"bug": bug, **attrs})
    suite = get_adapter_test_class(harness=harness_cls)()
    harness = harness_cls(tmp_path)
    getattr(suite, test)(harness)


@pytest.mark.parametrize(
    ("bug", "test"),
    [
        ("skip_ties", "test_many_records_sharing_one_modstamp"),
        ("stuck", "test_pagination_every_record_once"),
        ("hard_delete", "test_deletes_are_visible"),
        ("batch_fails", "test_write_back_round_trip"),
    ],
)
def test_suite_catches_defects(bug: str, test: str, tmp_path: Path) -> None:
    with pytest.raises(AssertionError):
        _run(bug, test, tmp_path)


def test_drain_guards_against_a_cursor_that_does_not_move(tmp_path: Path) -> None:
    harness = type("StuckHarness", (MemoryHarness,), {"bug": "stuck"})(tmp_path)
    harness.seed(7)
    with pytest.raises(CursorLoop, match="repeated"):
        drain(harness.make_adapter(), "contacts")


def test_missing_capability_skips_with_reason(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="does not declare the 'write' capability"):
        _run("", "test_write_back_round_trip", tmp_path, capabilities=frozenset())


def test_skip_list_and_unknown_names() -> None:
    cls = get_adapter_test_class(harness=MemoryHarness, skip=["test_write_back_round_trip"], name="TestX")
    assert cls.__name__ == "TestX"
    with pytest.raises(pytest.skip.Exception):
        cls().test_write_back_round_trip(None)
    with pytest.raises(ValueError, match="unknown contract test"):
        get_adapter_test_class(harness=MemoryHarness, skip=["test_nope"])
