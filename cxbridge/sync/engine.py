"""The sync engine: streams read page by page, each page and its cursor committed in one transaction.

ARCHITECTURE §2 and §6 are the contract. Per (source, stream), in the adapter's stream order:

1. a ``sync_runs`` row, ``sync_started``; the committed cursor, clamped if it lies in the future, minus the
   look-back window (:mod:`cxbridge.sync.cursors`);
2. per page: ``prepare_records`` (isolated), then in ONE transaction: quarantine, mirror upsert, identity /
   interactions / tombstones / merges (:class:`~cxbridge.sync.page.PageWriter`), the cursor (clamped to the run
   start minus the safety margin, never backwards) and the run's counters + heartbeat;
3. after the commit: ``customers_merged``, ``interactions_recorded``, ``customers_changed``,
   ``records_quarantined`` with a :class:`~cxbridge.sync.context.StoreContext` (each plugin isolated, failures
   stored in ``plugin_failures``); then the traits plugins set, write-back planning and actions in one
   transaction; then ``events_emitted``;
4. ``QuotaExhausted`` / ``RateLimited`` stop the stream (status ``stopped``; the cursor stays at the last
   committed page); any other error fails it (``failed``) and the other streams go on. :meth:`SyncEngine.stop`
   (SIGTERM in the CLI) finishes the current page, commits and stops.

A crash (kill -9) at any point loses at most the uncommitted page, which is read again on restart; upserts
by source key and content hashes make the re-read idempotent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from ..adapters import Adapter, Cursor, StreamInfo
from ..errors import ConfigError, QuotaExhausted, RateLimited, RecordError
from ..golden import Survivorship
from ..hooktypes import SyncRunInfo
from ..identity import default as default_identity
from ..identity.keys import KeyBuilder
from ..identity.resolver import IdentityResolver
from ..models import SourceRecord
from ..plugins import PluginFailure, call_isolated
from ..store import Store
from ..store import schema as s
from ..store.ops import new_id, utcnow
from . import cursors, quarantine, runs
from .context import StoreContext, interaction_of
from .gctune import relaxed_gc
from .mapping import CompiledMapping, compile_mapping, merge_specs
from .page import PageOutcome, PageWriter
from .prefetch import prefetched

__all__ = ["Progress", "ReplayReport", "SyncEngine"]

logger = logging.getLogger(__name__)

#: ``progress(event, run)`` with event ``start`` | ``page`` | ``end``.
Progress = Callable[[str, SyncRunInfo], None]


@dataclass
class ReplayReport:
    """Outcome of a quarantine replay."""

    replayed: list[int] = field(default_factory=list)
    still_failing: dict[int, str] = field(default_factory=dict)


@dataclass
class _Plan:
    source: str
    adapter: Adapter
    stream: StreamInfo
    writer: PageWriter


def _optional(module: str) -> ModuleType | None:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        return None


class SyncEngine:
    """Runs syncs of configured sources into a store.

    :param store: the opened store.
    :param config: the validated config.
    :param pm: the plugin manager.
    :param adapters: source name -> adapter instance (see :func:`cxbridge.sources.build_adapter`).
    :param now: the clock (tests freeze it).
    :param prefetch: read the next page in a reader thread while the current one is applied
        (:mod:`cxbridge.sync.prefetch`); the adapter's generator only ever runs in that thread. An adapter
        whose reads do not wait on a network (a local database) can opt out with a class attribute
        ``prefetch_pages = False``: its page reads are CPU work under the GIL and cannot overlap the store
        work, so the thread would only add contention (measured ~8 % CPU, bench/LOCAL_RESULTS.md).
    :param reconcile_interval: how often an incremental run of a stream that does not report deletions also
        compares the source's ids with the mirror (``list_ids``) to find hard deletes; None = only on
        ``--full`` runs. The last time is kept in ``source_state`` (``reconciled_at:<stream>``).
    """

    def __init__(
        self,
        store: Store,
        config: Any,
        pm: Any,
        adapters: Mapping[str, Adapter],
        *,
        now: Callable[[], datetime] = utcnow,
        reconcile_interval: timedelta | None = timedelta(hours=24),
        prefetch: bool = True,
    ) -> None:
        self.store = store
        self.prefetch = prefetch
        self.reconcile_interval = reconcile_interval
        self.config = config
        self.pm = pm
        self.adapters = dict(adapters)
        self.now = now
        self._stop = threading.Event()
        self._failures: list[tuple[PluginFailure, str | None, int | None]] = []
        identity = config.identity
        self.keys = KeyBuilder(identity.match_on, identity.cross_ids)
        self.survivorship = Survivorship(identity.survivorship, config.source_order())
        impls = pm.hook.resolve_identity.get_hookimpls() if pm is not None else []
        default_only = all(impl.plugin is default_identity for impl in impls)
        self.resolver = IdentityResolver(self.keys, self.survivorship, self._decide, default_only=default_only)
        outbox = _optional("cxbridge.outbox")
        erasure = _optional("cxbridge.erasure")
        self._echo = getattr(outbox, "filter_own_writes", None)
        self._erased_ids = getattr(erasure, "erased_source_keys", None)
        self._erased_keys = getattr(erasure, "is_erased", None)
        self._writers: dict[tuple[str, str], PageWriter] = {}
        self._open_q: dict[tuple[str, str], bool] = {}  # per stream: has open quarantine rows
        self._failures_lock = threading.Lock()
        self.writable = [name for name, a in self.adapters.items() if "write" in a.capabilities]

    # ------------------------------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the running sync to stop after the current page (SIGTERM handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ---------------------------------------------------------------------------------------- planning

    def mapping_for(self, source: str, stream: StreamInfo) -> CompiledMapping:
        """The compiled field map of a stream (adapter default updated by the config)."""
        src = self.config.sources.get(source)
        override = src.streams.get(stream.name).mapping if src and stream.name in src.streams else None
        spec = merge_specs(stream.default_mapping, override)
        return compile_mapping(spec, stream.entity, default_region=self.config.identity.default_region,
                               key_prefix=f"sources.{source}.streams.{stream.name}.mapping")

    def writer_for(self, source: str, stream: StreamInfo) -> PageWriter:
        key = (source, stream.name)
        if key not in self._writers:
            self._writers[key] = PageWriter(
                source, stream, self.mapping_for(source, stream), self.resolver,
                echo_filter=self._echo, erased_filter=self._erased_ids, erased_keys=self._erased_keys,
            )
        return self._writers[key]

    def plan(self, sources: Sequence[str] | None = None) -> list[_Plan]:
        """The (source, stream) runs of a sync, every mapping compiled (bad config fails here, naming the key)."""
        names = list(sources) if sources else [n for n in self.config.enabled_sources() if n in self.adapters]
        plans = []
        for name in names:
            if name not in self.config.sources:
                raise ConfigError(f"unknown source {name!r}; configured: {', '.join(self.config.sources)}",
                                  key=f"sources.{name}")
            if name not in self.adapters:
                raise ConfigError(f"no adapter built for source {name!r}", key=f"sources.{name}")
            adapter = self.adapters[name]
            src = self.config.sources[name]
            streams = adapter.streams()
            offered = {st.name for st in streams}
            for stream_name in src.streams:
                if stream_name not in offered:
                    raise ConfigError(f"adapter {src.adapter!r} has no stream {stream_name!r}; it offers "
                                      f"{', '.join(sorted(offered))}", key=f"sources.{name}.streams.{stream_name}")
            for stream in streams:
                if stream.name in src.streams and not src.streams[stream.name].enabled:
                    continue
                plans.append(_Plan(name, adapter, stream, self.writer_for(name, stream)))
        return plans

    # --------------------------------------------------------------------------------------------- runs

    def run(self, sources: Sequence[str] | None = None, *, full: bool = False,
            progress: Progress | None = None) -> list[SyncRunInfo]:
        """Sync ``sources`` (default: every enabled source with an adapter); one :class:`SyncRunInfo` per stream.

        :param full: read everything (ignoring cursors) and reconcile deletes of streams that do not report
            them.
        :param progress: called with ``("start" | "page" | "end", run)``.
        """
        plans = self.plan(sources)
        results = []
        for p in plans:
            if self.stopping:
                break
            results.append(self.run_stream(p, full=full, progress=progress))
        return results

    def run_one(self, source: str, stream: str, *, full: bool = False,
                progress: Progress | None = None) -> SyncRunInfo:
        """Sync one (source, stream) -- the unit the daemon schedules (with one lock per stream)."""
        for p in self.plan([source]):
            if p.stream.name == stream:
                return self.run_stream(p, full=full, progress=progress)
        raise ConfigError(f"source {source!r} has no enabled stream {stream!r}", key=f"sources.{source}.streams")

    def sync_ids(self, source: str, stream: str, ids: Sequence[str]) -> PageOutcome:
        """Re-read the given records (after a webhook) and apply them; the stream's cursor is not touched.

        Records that no longer exist come back from the adapter as tombstones; merged ones with
        ``merged_into``. Returns what changed (the change hooks have run).
        """
        p = next((x for x in self.plan([source]) if x.stream.name == stream), None)
        if p is None:
            raise ConfigError(f"source {source!r} has no enabled stream {stream!r}",
                              key=f"sources.{source}.streams")
        total = PageOutcome()
        run_id = f"ids_{new_id('run')[4:]}"
        for page in p.adapter.read_ids(stream, list(ids)):
            records = list(page.records)
            rejected = self._prepare(p, records, run_id)
            now = self.now()
            with self.store.begin() as conn:
                outcome = p.writer.write(conn, records, run_id, now)
                outcome.quarantined.extend(rejected)
                quarantine.add(conn, source, stream, outcome.quarantined, run_id, now)
                self._write_failures(conn)
            self._after_commit(p, outcome, run_id, now)
            total.read += outcome.read
            total.changed += outcome.changed
            total.quarantined.extend(outcome.quarantined)
            total.customers |= outcome.customers
            total.merges.extend(outcome.merges)
        return total

    def run_stream(self, p: _Plan, *, full: bool = False, progress: Progress | None = None) -> SyncRunInfo:
        """Sync one stream (see the module docs)."""
        with relaxed_gc():  # pages allocate heavily; see cxbridge.sync.gctune
            return self._run_stream(p, full=full, progress=progress)

    def _run_stream(self, p: _Plan, *, full: bool, progress: Progress | None) -> SyncRunInfo:
        source, stream, adapter, writer = p.source, p.stream, p.adapter, p.writer
        started = self.now()
        limit = started - timedelta(seconds=self.config.sync.safety_margin_seconds)
        lookback = timedelta(seconds=self.config.lookback_seconds(source))
        info = SyncRunInfo(id=new_id("run"), source=source, stream=stream.name, started_at=started)
        with self.store.begin() as conn:
            saved = cursors.load_cursor(conn, source, stream.name)
            runs.start_run(conn, info, full=full, cursor=saved)
            self._open_q[(source, stream.name)] = quarantine.has_open(conn, source, stream.name)
        self._hook("sync_started", info.id, run=info)
        if progress:
            progress("start", info)
        committed = saved if saved.modstamp is None or saved.modstamp <= limit else Cursor(state=saved.state)
        read_from = cursors.read_start(saved, lookback, limit)
        full_read = full or not stream.incremental
        try:
            if self.prefetch and getattr(adapter, "prefetch_pages", True) is not False:
                pages: Iterable[Any] = prefetched(
                    lambda: adapter.read(stream.name, read_from, full=full_read),
                    name=f"cxbridge-read-{source}-{stream.name}")
            else:
                pages = adapter.read(stream.name, read_from, full=full_read)
            for page in pages:
                info, committed = self._page(p, page.records, page.cursor, page.api_calls, info, committed, limit)
                if progress:
                    progress("page", info)
                if self.stopping:
                    info = replace(info, status="stopped", error="stopped on request (SIGTERM)")
                    break
            else:
                if self._reconcile_due(p, full):
                    info = self._reconcile(p, info)
                info = replace(info, status="succeeded")
            if stream.entity in ("customer", "interaction"):
                self._adopt(writer, info)
        except (QuotaExhausted, RateLimited) as exc:
            info = replace(info, status="stopped", error=str(exc))
            logger.warning("%s/%s stopped: %s", source, stream.name, exc)
        except Exception as exc:
            info = replace(info, status="failed", error=f"{type(exc).__name__}: {exc}")
            logger.error("%s/%s failed: %s", source, stream.name, exc, exc_info=True)
        with self.store.begin() as conn:
            info = runs.finish_run(conn, info, self.now(), committed)
        self._hook("sync_finished", info.id, run=info)
        self._write_failures()
        if progress:
            progress("end", info)
        return info

    def _page(self, p: _Plan, records: Iterable[SourceRecord], page_cursor: Cursor, api_calls: int,
              info: SyncRunInfo, committed: Cursor, limit: datetime) -> tuple[SyncRunInfo, Cursor]:
        batch = list(records)
        read = len(batch)
        rejected = self._prepare(p, batch, info.id)
        now = self.now()
        with self.store.begin() as conn:
            outcome = p.writer.write(conn, batch, info.id, now)
            outcome.quarantined.extend(rejected)
            key = (p.source, p.stream.name)
            if self._open_q.get(key) and outcome.written:
                quarantine.resolve(conn, p.source, p.stream.name, outcome.written, now)
            quarantine.add(conn, p.source, p.stream.name, outcome.quarantined, info.id, now)
            if outcome.quarantined:
                self._open_q[key] = True
            committed = cursors.advance(committed, page_cursor, limit)
            cursors.save_cursor(conn, p.source, p.stream.name, committed, info.id, now)
            info = replace(
                info,
                records_read=info.records_read + read,
                records_changed=info.records_changed + outcome.changed,
                records_quarantined=info.records_quarantined + len(outcome.quarantined),
                pages=info.pages + 1,
                api_calls=info.api_calls + api_calls,
            )
            runs.update_run(conn, info, now, committed)
            self._write_failures(conn)
        self._after_commit(p, outcome, info.id, now)
        return info, committed

    def _prepare(self, p: _Plan, batch: list[SourceRecord], run_id: str) -> list[tuple[SourceRecord, str]]:
        """``prepare_records``; a record a plugin rejects with ``RecordError(source_id=...)`` is quarantined."""
        rejected: list[tuple[SourceRecord, str]] = []
        if not self.pm.hook.prepare_records.get_hookimpls():
            return rejected
        for _attempt in range(len(batch) + 1):
            try:
                call_isolated(self.pm, "prepare_records", source=p.source, stream=p.stream.name, records=batch,
                              propagate=(RecordError,), on_failure=self._on_failure(run_id, len(batch)))
                return rejected
            except RecordError as exc:
                victim = next((r for r in batch if r.source_id == exc.source_id), None)
                if victim is None:  # a RecordError naming no record of the page: a plugin bug
                    self._on_failure(run_id, len(batch))(
                        PluginFailure("unknown", None, "prepare_records", exc, ""))
                    return rejected
                batch.remove(victim)
                rejected.append((victim, f"prepare_records: {exc}"))
        return rejected

    # ------------------------------------------------------------------------------------ after commit

    def _after_commit(self, p: _Plan, outcome: PageOutcome, run_id: str, now: datetime) -> None:
        self.notify(outcome.customers, merges=outcome.merges, interactions=outcome.interactions, run_id=run_id,
                    now=now)
        if outcome.quarantined:
            items = [{"source_id": r.source_id, "reason": reason, "raw": quarantine.raw_of(r)}
                     for r, reason in outcome.quarantined]
            self._hook("records_quarantined", run_id, source=p.source, stream=p.stream.name, items=items)

    def notify(self, customer_ids: Iterable[str], *, merges: Sequence[tuple[str, list[str]]] = (),
               interactions: Sequence[Mapping[str, Any]] = (), run_id: str | None = None,
               now: datetime | None = None) -> StoreContext:
        """Run the change hooks for a committed batch, then apply what plugins produced."""
        context = StoreContext(self.store, self.config, self.pm, now=now or self.now(), run_id=run_id,
                               writable_sources=self.writable)
        for survivor, merged in merges:
            self._hook("customers_merged", run_id, context=context, survivor_id=survivor, merged_ids=list(merged))
        if interactions and self.pm.hook.interactions_recorded.get_hookimpls():
            models = [interaction_of(_Row(row)) for row in interactions]
            self._hook("interactions_recorded", run_id, context=context, interactions=models)
        if self.pm.hook.customers_changed.get_hookimpls():
            ids = sorted(set(customer_ids))
            if ids:
                self._hook("customers_changed", run_id, context=context, customer_ids=ids)
        for _round in range(3):  # events may cause more traits / events; bounded
            if not context.pending:
                break
            report = context.flush()
            if report.events and self.pm.hook.events_emitted.get_hookimpls():
                self._hook("events_emitted", run_id, context=context, events=report.events)
        self._write_failures()
        return context

    def _adopt(self, writer: PageWriter, info: SyncRunInfo) -> None:
        now = self.now()
        with self.store.begin() as conn:
            adopted = writer.adopt_orphans(conn, now)
        if adopted:
            self.notify(adopted, run_id=info.id, now=now)

    # ------------------------------------------------------------------------------------ reconciliation

    def _reconcile_due(self, p: _Plan, full: bool) -> bool:
        if p.stream.supports_deletes or "list_ids" not in p.adapter.capabilities:
            return False
        if full:
            return True
        if self.reconcile_interval is None:
            return False
        from ..store.state import SourceState

        state = SourceState(self.store, p.source)
        last = state.get(f"reconciled_at:{p.stream.name}")
        if last is None:  # first sync of the stream: nothing to reconcile yet; start the clock
            state.set(f"reconciled_at:{p.stream.name}", self.now().isoformat())
            return False
        return datetime.fromisoformat(last) + self.reconcile_interval <= self.now()

    def _reconcile(self, p: _Plan, info: SyncRunInfo) -> SyncRunInfo:
        """Tombstone mirror records the source no longer lists (streams without delete reporting)."""
        from .reconcile import vanished_ids

        gone = vanished_ids(self.store, p.source, p.stream.object_type, p.adapter.list_ids(p.stream.name))
        for i in range(0, len(gone), 1000):
            tombs = [SourceRecord(source=p.source, object_type=p.stream.object_type, source_id=sid, deleted=True,
                                  modstamp=None, merged_into=None)
                     for sid in gone[i : i + 1000]]
            now = self.now()
            with self.store.begin() as conn:
                outcome = p.writer.write(conn, tombs, info.id, now)
                info = replace(info, records_changed=info.records_changed + outcome.changed)
                runs.update_run(conn, info, now)
            self._after_commit(p, outcome, info.id, now)
        from ..store.state import SourceState

        SourceState(self.store, p.source).set(f"reconciled_at:{p.stream.name}", self.now().isoformat())
        return info

    # -------------------------------------------------------------------------------------- quarantine

    def replay(self, ids: Sequence[int] | None = None) -> ReplayReport:
        """Re-run quarantined records (``ids``, default every open one) through the current mappings."""
        report = ReplayReport()
        with self.store.connect() as conn:
            items = quarantine.list_items(conn, status="open", ids=ids)
        by_stream: dict[tuple[str, str], list[quarantine.QuarantineItem]] = {}
        for item in items:
            by_stream.setdefault((item.source, item.stream), []).append(item)
        for (source, stream_name), group in by_stream.items():
            adapter = self.adapters.get(source)
            stream = next((st for st in adapter.streams() if st.name == stream_name), None) if adapter else None
            if stream is None:
                for item in group:
                    report.still_failing[item.id] = f"source/stream {source}/{stream_name} is not configured"
                continue
            p = _Plan(source, adapter, stream, self.writer_for(source, stream))  # type: ignore[arg-type]
            records = [quarantine.record_of(item.raw) for item in group]
            now = self.now()
            run_id = f"replay_{new_id('run')[4:]}"
            rejected = self._prepare(p, records, run_id)
            with self.store.begin() as conn:
                outcome = p.writer.write(conn, records, run_id, now)
                outcome.quarantined.extend(rejected)
                failed = {r.source_id: reason for r, reason in outcome.quarantined}
                ok = [item.id for item in group if item.source_id not in failed]
                quarantine.mark(conn, ok, "replayed", now)
                for item in group:
                    if item.source_id in failed:
                        conn.execute(s.quarantine.update().where(s.quarantine.c.id == item.id).values(
                            reason=failed[item.source_id][:4000]))
                        report.still_failing[item.id] = failed[item.source_id]
                report.replayed.extend(ok)
            outcome.quarantined = []
            self._after_commit(p, outcome, run_id, now)
        return report

    def discard(self, ids: Sequence[int]) -> int:
        """Mark quarantined records as discarded (they stay for the audit trail)."""
        with self.store.begin() as conn:
            quarantine.mark(conn, ids, "discarded", self.now())
        return len(ids)

    # ----------------------------------------------------------------------------------------- plugins

    def _decide(self, candidate: Any, matches: Any) -> Any:
        return call_isolated(self.pm, "resolve_identity", candidate=candidate, matches=matches,
                             on_failure=self._on_failure(None, 1))

    def _on_failure(self, run_id: str | None, size: int | None) -> Callable[[PluginFailure], None]:
        def record(failure: PluginFailure) -> None:
            logger.warning("%s", failure)
            with self._failures_lock:
                self._failures.append((failure, run_id, size))

        return record

    def _hook(self, name: str, run_id: str | None, **kwargs: Any) -> Any:
        if self.pm is None:
            return None
        size = None
        for value in kwargs.values():
            if isinstance(value, (list, tuple)):
                size = len(value)
        return call_isolated(self.pm, name, on_failure=self._on_failure(run_id, size), **kwargs)

    def _write_failures(self, conn: Any = None) -> None:
        if not self._failures:
            return
        if conn is None:
            with self.store.begin() as own:
                self._write_failures(own)
            return
        with self._failures_lock:
            failures, self._failures = self._failures, []
        now = self.now()
        conn.execute(s.plugin_failures.insert(), [
            {"plugin": f.plugin, "distribution": f.distribution, "hook": f.hook,
             "error": f"{type(f.error).__name__}: {f.error}"[:4000], "batch_size": size, "run_id": run_id,
             "at": now}
            for f, run_id, size in failures
        ])


class _Row:
    """Attribute access over an interaction row dict (for :func:`interaction_of`)."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.__dict__.update(row)
