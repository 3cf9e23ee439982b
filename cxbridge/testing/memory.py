"""An in-memory adapter for tests: a faithful little CRM with modstamps, deletes, merges and writes.

:class:`MemoryAdapter` behaves like a modstamp-ordered CRM API: :meth:`~MemoryAdapter.read` returns records
ordered by ``(modstamp, id)`` after the cursor (``modstamp > m OR (modstamp = m AND id > last_id)``; with
``last_id`` None everything at ``m`` is included), ``page_size`` at a time, re-querying the current data for
every page -- so a record changed while paging moves behind the cursor and shows up again later, exactly as
with a real API. Deletions and merges are tombstones at the time they happened. ``before_page`` lets a test
mutate the data between pages; ``fail`` injects an exception at a given page.

Example::

    crm = MemoryAdapter("shop", [StreamInfo("customers", "customers", "customer",
                                            default_mapping={"emails": "email"})])
    crm.put("customers", "1", {"email": "ann@example.com"}, modstamp=t0)
    engine = SyncEngine(store, config, pm, {"shop": crm})
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..adapters import (
    Adapter,
    AdapterContext,
    AdapterInfo,
    Cursor,
    Page,
    RecordRef,
    StreamInfo,
    WriteOp,
    WriteResult,
)
from ..hookspecs import hookimpl
from ..models import SourceRecord

__all__ = ["MemoryAdapter", "MemoryConfig", "memory_adapter_info", "memory_setup"]

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class MemoryConfig(BaseModel):
    """Connection settings of the memory adapter (none needed)."""

    model_config = ConfigDict(extra="forbid")
    page_size: int = 1000


@dataclass
class _Row:
    fields: dict[str, Any]
    modstamp: datetime
    deleted: bool = False
    merged_into: str | None = None
    associations: dict[str, list[str]] = field(default_factory=dict)


class MemoryAdapter(Adapter):
    """An in-memory CRM (see the module docs).

    :param source: the source name records carry.
    :param streams: the streams offered (their ``object_type`` is used on records).
    :param page_size: records per page.
    :param clock: time used for writes and mutations without an explicit modstamp.
    """

    capabilities = frozenset({"write", "list_ids", "read_ids", "erase"})
    write_batch_size = 100

    def __init__(
        self,
        source: str = "mem",
        streams: Sequence[StreamInfo] = (),
        *,
        page_size: int = 1000,
        clock: Callable[[], datetime] | None = None,
        context: AdapterContext | None = None,
    ) -> None:
        super().__init__(MemoryConfig(page_size=page_size), context)  # type: ignore[arg-type]
        self.source = source
        self._streams = list(streams)
        self.page_size = page_size
        self._tick = itertools.count(1)
        self.clock = clock or (lambda: T0 + timedelta(seconds=next(self._tick)))
        self.data: dict[str, dict[str, _Row]] = {st.name: {} for st in self._streams}
        self.before_page: Callable[[MemoryAdapter, str, int], None] | None = None
        self.fail: dict[tuple[str, int], BaseException] = {}
        self.writes: list[WriteOp] = []
        self.erased: list[RecordRef] = []
        self.pages_served = 0
        self.calls = 0

    # ------------------------------------------------------------------------------------------ data

    def _object_type(self, stream: str) -> str:
        return next(st.object_type for st in self._streams if st.name == stream)

    def put(self, stream: str, source_id: str, fields: dict[str, Any], *, modstamp: datetime | None = None,
            associations: dict[str, list[str]] | None = None) -> None:
        """Create or update a record (a new modstamp; fields replaced)."""
        self.data[stream][source_id] = _Row(dict(fields), modstamp or self.clock(),
                                            associations=dict(associations or {}))

    def update(self, stream: str, source_id: str, changes: dict[str, Any], *,
               modstamp: datetime | None = None) -> None:
        """Change some fields of a record (bumps its modstamp)."""
        row = self.data[stream][source_id]
        row.fields.update(changes)
        row.modstamp = modstamp or self.clock()

    def delete(self, stream: str, source_id: str, *, modstamp: datetime | None = None) -> None:
        """Delete a record: it becomes a tombstone."""
        row = self.data[stream][source_id]
        row.deleted, row.modstamp = True, modstamp or self.clock()

    def merge(self, stream: str, loser: str, winner: str, *, modstamp: datetime | None = None) -> None:
        """Merge ``loser`` into ``winner`` (the loser becomes a tombstone with ``merged_into``)."""
        stamp = modstamp or self.clock()
        row = self.data[stream][loser]
        row.deleted, row.merged_into, row.modstamp = True, winner, stamp
        self.data[stream][winner].modstamp = stamp

    def live(self, stream: str) -> dict[str, dict[str, Any]]:
        """The live records of a stream: id -> fields."""
        return {sid: dict(r.fields) for sid, r in self.data[stream].items() if not r.deleted}

    def _record(self, stream: str, sid: str, row: _Row) -> SourceRecord:
        return SourceRecord(source=self.source, object_type=self._object_type(stream), source_id=sid,
                            modstamp=row.modstamp, fields=dict(row.fields), deleted=row.deleted,
                            merged_into=row.merged_into, associations={k: list(v) for k, v in
                                                                       row.associations.items()})

    # ------------------------------------------------------------------------------------- adapter API

    def streams(self) -> list[StreamInfo]:
        return list(self._streams)

    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Iterator[Page]:
        position: tuple[datetime, str] | None = None
        if not full and cursor.modstamp is not None:
            position = (cursor.modstamp, cursor.last_id) if cursor.last_id is not None else None
            floor = cursor.modstamp
        else:
            floor = None
        info = next(st for st in self._streams if st.name == stream)
        index = 0
        while True:
            if self.before_page is not None:
                self.before_page(self, stream, index)
            failure = self.fail.pop((stream, index), None)
            if failure is not None:
                raise failure
            self.calls += 1
            rows = sorted(self.data[stream].items(), key=lambda kv: (kv[1].modstamp, kv[0]))
            selected = []
            for sid, row in rows:
                if row.deleted and not info.supports_deletes:
                    continue
                key = (row.modstamp, sid)
                if position is not None:
                    if key <= position:
                        continue
                elif floor is not None and row.modstamp < floor:
                    continue
                selected.append((sid, row))
                if len(selected) >= self.page_size:
                    break
            if not selected:
                return
            records = [self._record(stream, sid, row) for sid, row in selected]
            last = records[-1]
            position = (last.modstamp, last.source_id)  # type: ignore[assignment]
            index += 1
            self.pages_served += 1
            yield Page(records=records, cursor=Cursor(modstamp=last.modstamp, last_id=last.source_id))
            if len(selected) < self.page_size:
                return

    def read_ids(self, stream: str, ids: Sequence[str]) -> Iterator[Page]:
        records = []
        for sid in ids:
            row = self.data[stream].get(sid)
            if row is None:
                records.append(SourceRecord(source=self.source, object_type=self._object_type(stream),
                                            source_id=sid, deleted=True, modstamp=None, merged_into=None))
            else:
                records.append(self._record(stream, sid, row))
        yield Page(records=records, cursor=Cursor())

    def list_ids(self, stream: str) -> Iterator[str]:
        yield from (sid for sid, row in self.data[stream].items() if not row.deleted)

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        results = []
        for op in ops:
            self.writes.append(op)
            stream = next((st.name for st in self._streams if st.object_type == op.object_type), None)
            if op.action == "update" and stream and op.source_id in self.data[stream]:
                self.update(stream, op.source_id, dict(op.fields))
                results.append(WriteResult(key=op.key, ok=True, source_id=op.source_id))
            elif op.action == "create":
                results.append(WriteResult(key=op.key, ok=True, source_id=f"new-{len(self.writes)}"))
            else:
                results.append(WriteResult(key=op.key, ok=False, error="not found", retryable=False))
        return results

    def erase(self, refs: Sequence[RecordRef]) -> list[WriteResult]:
        out = []
        for ref in refs:
            self.erased.append(ref)
            stream = next((st.name for st in self._streams if st.object_type == ref.object_type), None)
            if stream and ref.source_id in self.data[stream]:
                self.delete(stream, ref.source_id)
            out.append(WriteResult(key=f"{ref.object_type}:{ref.source_id}", ok=True))
        return out


def memory_adapter_info(adapter: MemoryAdapter) -> AdapterInfo:
    """An :class:`AdapterInfo` whose factory returns ``adapter`` (register it to configure a memory source)."""
    return AdapterInfo(name="memory", config_model=MemoryConfig, factory=lambda config, context: adapter,
                       description="in-memory test CRM")


class _AdapterPlugin:
    def __init__(self, infos: list[AdapterInfo]) -> None:
        self.infos = infos

    @hookimpl
    def register_adapters(self) -> list[AdapterInfo]:
        return self.infos


def memory_setup(
    store: Any,
    adapters: dict[str, MemoryAdapter],
    *,
    plugins: Sequence[object] = (),
    config: dict[str, Any] | None = None,
    now: Callable[[], datetime] | None = None,
) -> Any:
    """A :class:`~cxbridge.sync.SyncEngine` over ``store`` syncing the given memory adapters.

    :param adapters: source name -> adapter (each registered as adapter ``memory-<source>``).
    :param plugins: more plugins to register (objects or modules with hook implementations).
    :param config: more config (``identity``, ``sync``, ``writeback``, per-source keys under ``sources``).
    :param now: the engine's clock.
    """
    from ..config import config_from_dict
    from ..plugins import get_plugin_manager
    from ..sync import SyncEngine

    pm = get_plugin_manager(load_entrypoints=False)
    infos = [
        AdapterInfo(name=f"memory-{name}", config_model=MemoryConfig,
                    factory=(lambda a: (lambda config, context: a))(adapter))
        for name, adapter in adapters.items()
    ]
    pm.register(_AdapterPlugin(infos), name="memory-adapters")
    for extra in plugins:
        pm.register(extra)
    doc: dict[str, Any] = {k: v for k, v in (config or {}).items() if k != "sources"}
    sources = {name: {"adapter": f"memory-{name}"} for name in adapters}
    for name, extra_src in ((config or {}).get("sources") or {}).items():
        sources.setdefault(name, {}).update(extra_src)
    doc["sources"] = sources
    cfg = config_from_dict(doc, pm=pm)
    if now is None:
        return SyncEngine(store, cfg, pm, dict(adapters))
    return SyncEngine(store, cfg, pm, dict(adapters), now=now)
