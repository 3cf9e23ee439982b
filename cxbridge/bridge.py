"""The Python API: one object for a workspace (config + store + plugins + adapters).

Example::

    from cxbridge import Bridge

    with Bridge.from_config("cxbridge.toml") as bridge:
        bridge.sync()                                  # every enabled source, incrementally
        bridge.deliver_writes()                        # send pending write-backs to the CRMs
        view = bridge.customer("anna.mueller@example.com")
        print(view.customer.display_name, view.customer.trait("segments.tier"))
        for identity in view.identities:
            print(identity.source, identity.source_id)

The CLI (``cxbridge customers show``, ``cxbridge export``, ``cxbridge sync``...) is a thin layer over this.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotFound

if TYPE_CHECKING:
    import pluggy

    from .adapters import Adapter
    from .config import Config
    from .hooktypes import SyncRunInfo
    from .models import Customer, Interaction
    from .store import Store
    from .sync.context import StoreContext
    from .sync.page import PageOutcome
    from .web.metrics import MetricFamily

__all__ = ["Bridge", "Customer360", "SourceIdentity"]


@dataclass(frozen=True)
class SourceIdentity:
    """One source record a golden customer is assembled from, as last seen in the CRM."""

    source: str
    object_type: str
    source_id: str
    rule: str | None
    modstamp: datetime | None
    deleted: bool
    fields: dict[str, Any]


@dataclass(frozen=True)
class Customer360:
    """The single customer view: golden record, its identities in every source and the interaction timeline."""

    customer: Customer
    identities: list[SourceIdentity]
    interactions: list[Interaction]
    open_writes: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


class Bridge:
    """A workspace: its configuration, store, plugin manager and source adapters.

    Build it with :meth:`from_config`; close it (or use it as a context manager) to release connections.
    """

    def __init__(self, config: Config, store: Store, pm: pluggy.PluginManager) -> None:
        self.config = config
        self.store = store
        self.pm = pm
        self._adapters: dict[str, Adapter] = {}
        self._ids_engines: dict[str, Any] = {}
        self._ids_lock = threading.Lock()
        self._adapter_lock = threading.Lock()
        self._ids_stream_locks: dict[tuple[str, str], threading.Lock] = {}

    # ------------------------------------------------------------------------------------------ lifecycle

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str] | None = None, *, pm: pluggy.PluginManager | None = None
    ) -> Bridge:
        """Load ``cxbridge.toml`` (default: ``$CXBRIDGE_CONFIG`` or ``./cxbridge.toml``) and open its store.

        :raises ConfigError: naming the offending key.
        """
        from .config import DEFAULT_CONFIG_NAME, load_config
        from .plugins import get_plugin_manager
        from .store import open_store

        pm = pm or get_plugin_manager()
        config_path = Path(path or os.environ.get("CXBRIDGE_CONFIG") or DEFAULT_CONFIG_NAME)
        config = load_config(config_path, pm=pm)
        store = open_store(config.store.url, base_dir=config.workspace)
        return cls(config, store, pm)

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close adapters and the store."""
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()
        self._ids_engines.clear()
        self.store.close()

    def adapter(self, source: str) -> Adapter:
        """The adapter instance of a configured source (built once)."""
        with self._adapter_lock:  # web workers may ask for the same adapter at once: build it once
            if source not in self._adapters:
                from .sources import build_adapter

                self._adapters[source] = build_adapter(self.config, source, pm=self.pm, store=self.store)
            return self._adapters[source]

    def use_adapter(self, source: str, adapter: Adapter) -> None:
        """Use ``adapter`` for ``source`` instead of building one from the config (tests, embedding).

        The bridge closes it with the others.
        :raises NotFound: ``source`` is not configured.
        """
        if source not in self.config.sources:
            raise NotFound(f"no source {source!r}; configured: {', '.join(self.config.sources) or 'none'}")
        self._adapters[source] = adapter
        self._ids_engines.pop(source, None)

    def adapters(self, sources: Sequence[str] | None = None) -> dict[str, Adapter]:
        """Adapters of the given (default: every enabled) sources."""
        names = list(sources) if sources else list(self.config.enabled_sources())
        for name in names:
            if name not in self.config.sources:
                raise NotFound(f"no source {name!r}; configured: {', '.join(self.config.sources) or 'none'}")
        return {name: self.adapter(name) for name in names}

    def context(self, *, now: datetime | None = None) -> StoreContext:
        """A :class:`~cxbridge.hooktypes.PluginContext` over the store (for scripts and plugin commands).

        Traits, actions and events set through it are applied by ``context.flush()``.
        """
        from .sync.context import StoreContext

        return StoreContext(self.store, self.config, self.pm, now=now)

    # ---------------------------------------------------------------------------------------------- work

    def sync(
        self, sources: Sequence[str] | None = None, *, full: bool = False, progress: Any = None
    ) -> list[SyncRunInfo]:
        """Sync the given (default: every enabled) sources; returns one run per stream."""
        from .sync.engine import SyncEngine

        engine = SyncEngine(self.store, self.config, self.pm, self.adapters(sources))
        return engine.run(sources, full=full, progress=progress)

    def sync_ids(self, source: str, stream: str, ids: Sequence[str]) -> PageOutcome:
        """Re-read the given records of one stream now and apply them (webhooks); the cursor is not touched.

        Deleted records come back as tombstones and merged ones as aliases (see
        :meth:`cxbridge.sync.SyncEngine.sync_ids`); the change hooks and write-back planning run as after a
        sync page. Safe to call from several threads.

        :raises NotFound: ``source`` is not configured.
        :raises ConfigError: the source has no enabled stream ``stream``.
        """
        from .sync.engine import SyncEngine

        with self._ids_lock:
            engine = self._ids_engines.get(source)
            if engine is None:
                engine = self._ids_engines[source] = SyncEngine(
                    self.store, self.config, self.pm, self.adapters([source]), prefetch=False)
            stream_lock = self._ids_stream_locks.setdefault((source, stream), threading.Lock())
        with stream_lock:  # one page writer per stream: concurrent deliveries of one stream take turns
            return engine.sync_ids(source, stream, list(ids))

    def deliver_writes(self, *, now: datetime | None = None) -> Any:
        """Send due write-backs and actions from the outbox to the CRMs; returns the delivery report."""
        from .outbox import deliver

        writable = {name: a for name, a in self.adapters().items() if "write" in a.capabilities}
        return deliver(self.store, writable, now=now, pm=self.pm)

    def forget(self, identifier: str) -> Any:
        """Erase a person (email, phone, customer id or alias) here and in every connected CRM that supports it.

        A source whose adapter cannot be built (missing token, bad settings) does not stop the erasure: it is
        reported failed and its records are kept for :meth:`retry_erasures`.

        :returns: the :class:`~cxbridge.erasure.ErasureReport` (per-source status, rows deleted).
        :raises NotFound: nobody matches ``identifier``.
        """
        from .erasure import forget
        from .sources import build_available

        adapters, unavailable = build_available(self.config.enabled_sources(), self.adapter)
        return forget(self.store, adapters, identifier, pm=self.pm,
                      default_region=self.config.identity.default_region, unavailable=unavailable)

    def pending_erasures(self) -> list[Any]:
        """CRM records of forgotten people that their CRM has not confirmed erasing yet (oldest first)."""
        from .erasure import pending_erasures

        with self.store.connect() as conn:
            return pending_erasures(conn)

    def retry_erasures(self) -> Any:
        """Ask the CRMs again to erase what they did not confirm (:func:`cxbridge.erasure.retry_erasures`).

        :returns: the :class:`~cxbridge.erasure.ErasureRetryReport` (per source: erased now, still pending).
        """
        from .erasure import retry_erasures
        from .sources import build_available

        adapters, unavailable = build_available(self.config.enabled_sources(), self.adapter)
        return retry_erasures(self.store, adapters, unavailable=unavailable)

    # ------------------------------------------------------------------------------------------ 360 view

    def find_customer_id(self, ref: str) -> str:
        """Resolve a customer id, alias, email, phone or ``source/source_id`` to the golden id.

        :raises NotFound: nothing matches.
        """
        from .views import find_customer_id

        with self.store.connect() as conn:
            return find_customer_id(conn, ref, default_region=self.config.identity.default_region)

    def customer(self, ref: str, *, interactions: int = 50) -> Customer360:
        """The 360° view of one customer (``ref``: id, alias, email, phone or ``source/source_id``)."""
        from .views import customer_360

        customer_id = self.find_customer_id(ref)
        with self.store.connect() as conn:
            return customer_360(conn, customer_id, interactions=interactions)

    def search_customers(self, query: str, *, limit: int = 20) -> list[Customer]:
        """Customers whose name, any email or any phone contains ``query`` (case-insensitive; a phone number
        in any format also finds its E.164 form)."""
        from .views import search_customers

        with self.store.connect() as conn:
            return search_customers(conn, query, limit=limit, default_region=self.config.identity.default_region)

    def export(self, kind: str, fmt: str, out: Any, *, batch_size: int = 1000) -> int:
        """Write ``customers``, ``interactions`` or ``links`` as ``jsonl`` or ``csv`` to a text stream.

        Streams in batches (memory stays flat); returns the number of rows written.
        """
        from .export import export

        with self.store.connect() as conn:
            return export(conn, kind, fmt, out, batch_size=batch_size)

    def iter_customers(self, batch_size: int = 1000) -> Iterator[list[Customer]]:
        """Every live golden customer, in batches."""
        yield from self.context().iter_customers(batch_size)

    def status(self) -> dict[str, Any]:
        """Counts for dashboards: customers, links per source, open quarantine, outbox by status, last runs."""
        from .views import status_summary

        with self.store.connect() as conn:
            return status_summary(conn)

    def health(self) -> dict[str, Any]:
        """``/health``: ``status`` ``ok`` | ``degraded`` (store unreachable), the store, the newest run of
        every stream, open quarantine, outbox and webhook-inbox counts and an ``attention`` list
        (see :mod:`cxbridge.web.health` for the policy)."""
        from .web.health import health_report

        return health_report(self.store, self.config.enabled_sources())

    def metrics(self) -> list[MetricFamily]:
        """Prometheus metric families read from the store (sync runs, quarantine, outbox, webhook inbox)."""
        from .web.health import store_metrics

        return store_metrics(self.store)


