"""Plugin test helpers: temporary registration and an in-memory :class:`~cxbridge.hooktypes.PluginContext`.

::

    from cxbridge.testing import MemoryContext, register_plugin

    def test_greeting(plugin_manager):
        ctx = MemoryContext(customers=[Customer(id="c1", first_name="Ann")])
        with register_plugin(plugin_manager, my_plugin):
            call_isolated(plugin_manager, "customers_changed", context=ctx, customer_ids=["c1"])
        assert ctx.traits["c1"]["hello.greeting"] == "Hello, Ann!"
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from cxbridge.hooktypes import Action
    from cxbridge.models import Customer, Interaction

__all__ = ["MemoryContext", "register_plugin"]


@contextmanager
def register_plugin(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> Iterator[str]:
    """Register ``plugin`` (a module, class instance or class with hookimpls) for the ``with`` block.

    Unknown hook implementations fail at once with :class:`~cxbridge.errors.PluginError`, as they do for
    installed plugins.

    Yields:
        The name the plugin was registered under.
    """
    from cxbridge.plugins import check_hooks

    registered = pm.register(plugin, name=name)
    if registered is None:
        raise ValueError(f"plugin name {name!r} is blocked on this plugin manager")
    try:
        check_hooks(pm)
        yield registered
    finally:
        if pm.is_registered(plugin):
            pm.unregister(plugin)


class MemoryContext:
    """A :class:`~cxbridge.hooktypes.PluginContext` over in-memory customers and interactions.

    Everything a plugin writes is kept for assertions: :attr:`traits` (customer id -> name -> value),
    :attr:`trait_producers` (customer id -> name -> producer), :attr:`actions`, :attr:`events`.

    Args:
        customers: the golden customers the plugin may read.
        interactions: interactions (``customer_id`` set).
        settings: namespace -> settings model (or mapping) returned by :meth:`settings`.
        now: the frozen current time.
        aliases: merged id -> surviving id.
    """

    def __init__(
        self,
        customers: Sequence[Customer] = (),
        interactions: Sequence[Interaction] = (),
        *,
        settings: Mapping[str, Any] | None = None,
        now: datetime | None = None,
        aliases: Mapping[str, str] | None = None,
        run_id: str | None = "test-run",
    ) -> None:
        self.customers: dict[str, Customer] = {c.id: c for c in customers}
        self.interactions: list[Interaction] = list(interactions)
        self._settings = dict(settings or {})
        self.now = now or datetime(2024, 1, 1, tzinfo=UTC)
        self.aliases = dict(aliases or {})
        self.run_id = run_id
        self.traits: dict[str, dict[str, Any]] = {}
        self.trait_producers: dict[str, dict[str, str]] = {}
        self.trait_writes = 0
        self.actions: list[Action] = []
        self.events: list[dict[str, Any]] = []
        #: Persisted plugin state, ``"<namespace>.<name>"`` -> JSON value (round-tripped through JSON, as the
        #: store does, so a value that would not survive the store fails here too).
        self.state: dict[str, Any] = {}

    def settings(self, namespace: str) -> Any:
        """The settings given for ``namespace``.

        Raises:
            KeyError: none were given (pass ``settings={namespace: Model()}``).
        """
        return self._settings[namespace]

    def _resolve(self, customer_id: str) -> str:
        seen = set()
        while customer_id in self.aliases and customer_id not in seen:
            seen.add(customer_id)
            customer_id = self.aliases[customer_id]
        return customer_id

    def get_customers(self, ids: Sequence[str]) -> list[Customer]:
        out: list[Customer] = []
        seen: set[str] = set()
        for raw in ids:
            cid = self._resolve(raw)
            customer = self.customers.get(cid)
            if customer is None or cid in seen or _erased(customer):
                continue
            seen.add(cid)
            out.append(customer)
        return out

    def iter_customers(self, batch_size: int = 1000) -> Iterator[list[Customer]]:
        live = [c for c in self.customers.values() if not _erased(c)]
        for start in range(0, len(live), batch_size):
            yield live[start : start + batch_size]

    def get_interactions(
        self, customer_ids: Sequence[str], types: Sequence[str] | None = None
    ) -> dict[str, list[Interaction]]:
        wanted = {self._resolve(c) for c in customer_ids}
        out: dict[str, list[Interaction]] = {c: [] for c in wanted}
        for item in sorted(self.interactions, key=lambda i: i.occurred_at):
            cid = self._resolve(item.customer_id) if item.customer_id else None
            if cid not in wanted:
                continue
            kind = getattr(item.type, "value", item.type)
            if types is not None and kind not in types:
                continue
            out[cid].append(item)
        return out

    def _live_ids(self, include_processing_opt_out: bool = False) -> set[str]:
        out = set()
        for cid, customer in self.customers.items():
            consent = getattr(customer, "consent", None)
            if _erased(customer):
                continue
            if not include_processing_opt_out and getattr(consent, "processing_opt_out", False):
                continue
            out.add(cid)
        return out

    def iter_interaction_rows(
        self,
        types: Sequence[str] | None = None,
        *,
        batch_size: int = 10_000,
        include_processing_opt_out: bool = False,
    ) -> Iterator[list[tuple[str, datetime, float | None, str | None, str]]]:
        """Rows ``(customer_id, occurred_at, amount, currency, type)`` ordered by customer, batches of about
        ``batch_size`` rows that never split a customer (see the protocol)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        live = self._live_ids(include_processing_opt_out)
        rows = []
        for item in self.interactions:
            cid = self._resolve(item.customer_id) if item.customer_id else None
            kind = str(getattr(item.type, "value", item.type))
            if cid not in live or (types is not None and kind not in types):
                continue
            amount = None if item.amount is None else float(item.amount)
            rows.append((cid, item.occurred_at, amount, item.currency, kind))
        rows.sort(key=lambda r: (r[0], r[1]))
        batch: list[tuple[str, datetime, float | None, str | None, str]] = []
        for row in rows:
            if len(batch) >= batch_size and batch[-1][0] != row[0]:
                yield batch
                batch = []
            batch.append(row)
        if batch:
            yield batch

    def count_customers(self, interaction_types: Sequence[str] | None = None) -> int:
        live = {cid for cid, c in self.customers.items() if not _erased(c)}
        if not interaction_types:
            return len(live)
        kinds = {str(getattr(t, "value", t)) for t in interaction_types}
        return len({
            self._resolve(i.customer_id) for i in self.interactions
            if i.customer_id and str(getattr(i.type, "value", i.type)) in kinds
        } & live)

    def get_state(self, key: str) -> Any:
        _check_state_key(key)
        value = self.state.get(key)
        return None if value is None else json.loads(json.dumps(value))

    def set_state(self, key: str, value: Any) -> None:
        _check_state_key(key)
        if value is None:
            self.state.pop(key, None)
        else:
            self.state[key] = json.loads(json.dumps(value, default=_json_default))

    def set_traits(self, customer_id: str, values: Mapping[str, Any], *, producer: str) -> None:
        cid = self._resolve(customer_id)
        current = self.traits.setdefault(cid, {})
        for name, value in values.items():
            if current.get(name, _MISSING) != value:
                current[name] = value
                self.trait_producers.setdefault(cid, {})[name] = producer
                self.trait_writes += 1

    def emit_action(self, action: Action) -> None:
        if any(a.key == action.key for a in self.actions):
            return
        self.actions.append(action)

    def emit_event(self, name: str, customer_id: str, payload: Mapping[str, Any]) -> None:
        self.events.append({"name": name, "customer_id": customer_id, "payload": dict(payload), "at": self.now})


_MISSING = object()
_STATE_KEY = re.compile(r"[a-z][a-z0-9_]*\.[A-Za-z0-9_.:-]{1,200}")


def _check_state_key(key: str) -> None:
    if not _STATE_KEY.fullmatch(key):
        raise ValueError(f"plugin state key must be '<namespace>.<name>' (e.g. 'segments.model'), got {key!r}")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"plugin state must be JSON-serialisable, got {type(value).__name__}")


def _erased(customer: Any) -> bool:
    consent = getattr(customer, "consent", None)
    return bool(getattr(consent, "erased", False) or getattr(customer, "erased", False))
