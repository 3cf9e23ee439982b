"""Building adapter instances for configured sources (used by ``cxbridge doctor`` and the sync engine).

:func:`build_adapter` looks up the source's adapter in the plugin manager, builds its
:class:`~cxbridge.adapters.AdapterContext` -- an HTTP factory preset with the framework's retry policy, the
source's secrets (for redaction) and an API-call counter; the source's persistent state; a rate-budget factory;
sleep and clock -- and calls :attr:`AdapterInfo.factory <cxbridge.adapters.AdapterInfo.factory>`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .adapters import Adapter, AdapterContext, RateBudget, StateStore
from .errors import ConfigError, CxbridgeError, NotFound
from .http import ApiStats, build_client
from .ratelimit import budget_factory as make_budget_factory
from .retry import RetryPolicy

if TYPE_CHECKING:
    import pluggy

    from .config import Config

__all__ = ["DictState", "build_adapter", "build_available", "build_context"]


class DictState:
    """In-memory :class:`~cxbridge.adapters.StateStore` (when no store is open, and in tests)."""

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(initial or {})
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            return self._data.get(key)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value


def _utcnow() -> datetime:
    return datetime.now(UTC)


def build_context(
    config: Config,
    source_name: str,
    *,
    store: Any = None,
    state: StateStore | None = None,
    budget_factory: Callable[[str, int, float], RateBudget] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = _utcnow,
    retry: RetryPolicy | None = None,
    http_defaults: Mapping[str, Any] | None = None,
    stats: ApiStats | None = None,
) -> AdapterContext:
    """The :class:`AdapterContext` for ``source_name`` (see :func:`build_adapter` for the parameters)."""
    if source_name not in config.sources:
        raise NotFound(f"no source {source_name!r} in the configuration; configured: {', '.join(config.sources)}")
    secrets = config.source_secrets(source_name)
    if state is None:
        if store is not None:
            from .store.state import SourceState

            state = SourceState(store, source_name)
        else:
            state = DictState()
    if budget_factory is None:
        engine = getattr(store, "engine", None)
        # SQLite is one machine by definition: an in-process bucket is exact and costs no writes. A server
        # database may be shared by workers on many hosts, so the budget lives in it.
        shared = engine is not None and engine.dialect.name != "sqlite"
        budget_factory = make_budget_factory(engine=engine if shared else None, sleep=sleep)
    policy = retry if retry is not None else RetryPolicy(sleep=sleep, now=now)
    defaults: dict[str, Any] = {"retry": policy, "secrets": tuple(secrets), "name": source_name}
    if stats is not None:
        defaults["stats"] = stats
    defaults.update(http_defaults or {})
    http = functools.partial(_client_with_defaults, defaults)
    return AdapterContext(
        source=source_name,
        http=http,
        state=state,
        budget_factory=budget_factory,
        sleep=sleep,
        now=now,
        secrets=tuple(secrets),
    )


def _client_with_defaults(defaults: Mapping[str, Any], **kwargs: Any) -> Any:
    """build_client with the framework's defaults; the adapter's arguments win, secrets are merged."""
    merged = dict(defaults)
    extra_secrets = tuple(kwargs.pop("secrets", ()))
    merged.update(kwargs)
    merged["secrets"] = tuple(defaults.get("secrets", ())) + extra_secrets
    return build_client(**merged)


def build_adapter(
    config: Config,
    source_name: str,
    *,
    pm: pluggy.PluginManager | None = None,
    store: Any = None,
    state: StateStore | None = None,
    budget_factory: Callable[[str, int, float], RateBudget] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = _utcnow,
    retry: RetryPolicy | None = None,
    http_defaults: Mapping[str, Any] | None = None,
    stats: ApiStats | None = None,
) -> Adapter:
    """Build the adapter instance of a configured source.

    :param config: the loaded configuration.
    :param source_name: a key of ``config.sources``.
    :param pm: the plugin manager the config was validated with (default: a fresh one).
    :param store: an open :class:`cxbridge.store.Store`: per-source state lives in its ``source_state`` table
        and, on a server database, rate budgets in ``rate_budgets``.
    :param state: the state store to use (overrides ``store``; default in-memory when there is no store).
    :param budget_factory: ``(key, limit, period) -> RateBudget`` (default: see ``store``).
    :param sleep: how adapters and retries wait (tests: a recorder).
    :param now: current UTC time.
    :param retry: the retry policy of the adapter's HTTP clients (default: 5 attempts, using ``sleep``).
    :param http_defaults: more :func:`cxbridge.http.build_client` defaults, e.g. ``{"transport": mock}`` in
        tests; arguments the adapter passes itself win.
    :param stats: count every API call of this source into one :class:`~cxbridge.http.ApiStats`.
    :raises ConfigError: the adapter is not installed (any more).
    """
    if pm is None:
        from .plugins import get_plugin_manager

        pm = get_plugin_manager()
    from .plugins import collect_adapters

    if source_name not in config.sources:
        raise NotFound(f"no source {source_name!r} in the configuration; configured: {', '.join(config.sources)}")
    source = config.sources[source_name]
    info = collect_adapters(pm).get(source.adapter)
    if info is None:
        raise ConfigError(f"adapter {source.adapter!r} is not installed", key=f"sources.{source_name}.adapter")
    context = build_context(
        config,
        source_name,
        store=store,
        state=state,
        budget_factory=budget_factory,
        sleep=sleep,
        now=now,
        retry=retry,
        http_defaults=http_defaults,
        stats=stats,
    )
    return info.factory(source.connection, context)


def build_available(
    names: Iterable[str], build: Callable[[str], Adapter]
) -> tuple[dict[str, Adapter], dict[str, str]]:
    """``build(name)`` for each source: the adapters that could be built, and the others -> why.

    For work that must go on when one CRM is misconfigured (erasure: the others still erase, the broken one's
    records wait for a retry).
    """
    adapters: dict[str, Adapter] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        try:
            adapters[name] = build(name)
        except CxbridgeError as exc:
            unavailable[name] = f"cannot build adapter: {exc}"
    return adapters, unavailable
