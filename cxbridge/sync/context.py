"""The :class:`~cxbridge.hooktypes.PluginContext` implementation: a plugin's door to the store.

:class:`StoreContext` reads golden customers and interactions (batched, alias-aware, erased customers
skipped) and *collects* what plugins produce -- traits, actions, events. :meth:`StoreContext.flush` applies
them in one transaction: traits whose value changed are written (with ``trait_history``), write-backs for
those customers are planned through the outbox, actions are enqueued (consent checked), events stored and
returned so the caller can hand them to ``events_emitted``.

The sync engine builds one per committed batch; the segments plugin's jobs, the daemon and
:class:`cxbridge.Bridge` build their own from a store and a config::

    context = StoreContext(store, config, pm)
    pm.hook.customers_changed(context=context, customer_ids=ids)
    report = context.flush()
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from ..golden import IN_CHUNK, load_customers, resolve_aliases
from ..hooktypes import Action
from ..models import Customer, Interaction, TraitType
from ..store import Store
from ..store import schema as s
from ..store.ops import upsert, utcnow
from .convert import jsonable

__all__ = ["FlushReport", "StoreContext", "infer_trait_type"]

logger = logging.getLogger(__name__)

_TRAIT_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")


def infer_trait_type(value: Any) -> TraitType:
    """The trait type of a Python value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, (float, Decimal)):
        return "number"
    if isinstance(value, (datetime, date)):
        return "datetime"
    if isinstance(value, str) or value is None:
        return "string"
    return "json"


def _trait_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return jsonable(value)


@dataclass
class FlushReport:
    """What :meth:`StoreContext.flush` applied."""

    traits_changed: dict[str, list[str]] = field(default_factory=dict)  # customer id -> trait names
    actions: int = 0
    actions_dropped: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    writebacks: Any = None


class StoreContext:
    """A :class:`~cxbridge.hooktypes.PluginContext` over a store.

    :param store: the opened store.
    :param config: the validated config (plugin settings, write-back rules); may be None in tests.
    :param pm: the plugin manager (for settings defaults); optional.
    :param now: the time the batch is processed at (defaults to the current time).
    :param run_id: the sync run, when called from one.
    :param writable_sources: sources whose adapters can write (actions go only there); default: every
        configured source.
    """

    def __init__(
        self,
        store: Store,
        config: Any = None,
        pm: Any = None,
        *,
        now: datetime | None = None,
        run_id: str | None = None,
        writable_sources: Collection[str] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.pm = pm
        self.now = now or utcnow()
        self.run_id = run_id
        self.writable_sources = writable_sources
        self._traits: dict[str, dict[str, tuple[Any, str]]] = {}
        self._actions: list[Action] = []
        self._events: list[dict[str, Any]] = []
        self._settings_cache: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------- reads

    def settings(self, namespace: str) -> Any:
        """The validated settings model of ``[plugins.<namespace>]`` (defaults when the table is absent)."""
        if namespace in self._settings_cache:
            return self._settings_cache[namespace]
        value = None
        plugins = getattr(self.config, "plugins", None) or {}
        if namespace in plugins:
            value = plugins[namespace]
        elif self.pm is not None:
            from ..plugins import collect_settings

            info = collect_settings(self.pm).get(namespace)
            if info is not None:
                value = info.model()
        self._settings_cache[namespace] = value
        return value

    def get_customers(self, ids: Sequence[str]) -> list[Customer]:
        """Golden customers by id or alias (erased and unknown ids skipped)."""
        with self.store.connect() as conn:
            return load_customers(conn, ids)

    def iter_customers(self, batch_size: int = 1000) -> Iterator[list[Customer]]:
        """Every live golden customer, in id order, ``batch_size`` at a time (keyset paging)."""
        last = ""
        c = s.customers
        while True:
            with self.store.connect() as conn:
                ids = [
                    row[0] for row in conn.execute(
                        select(c.c.id).where(c.c.id > last, c.c.erased.is_(False))
                        .order_by(c.c.id).limit(batch_size)
                    )
                ]
                if not ids:
                    return
                batch = load_customers(conn, ids)
            last = ids[-1]
            if batch:
                yield batch

    def get_interactions(
        self, customer_ids: Sequence[str], types: Sequence[str] | None = None
    ) -> dict[str, list[Interaction]]:
        """Interactions per requested id (aliases resolved), oldest first; deleted ones skipped."""
        it = s.interactions
        out: dict[str, list[Interaction]] = {cid: [] for cid in customer_ids}
        with self.store.connect() as conn:
            survivor = resolve_aliases(conn, customer_ids)
            wanted = sorted(set(survivor.values()))
            by_customer: dict[str, list[Interaction]] = {}
            for i in range(0, len(wanted), IN_CHUNK):
                query = select(it).where(it.c.customer_id.in_(wanted[i : i + IN_CHUNK]), it.c.deleted.is_(False))
                if types:
                    query = query.where(it.c.type.in_([str(getattr(t, "value", t)) for t in types]))
                query = query.order_by(it.c.customer_id, it.c.occurred_at, it.c.id)
                for row in conn.execute(query):
                    by_customer.setdefault(row.customer_id, []).append(interaction_of(row))
        for cid in customer_ids:
            out[cid] = by_customer.get(survivor.get(cid, cid), [])
        return out

    # ------------------------------------------------------------------------------------------ writes

    def set_traits(self, customer_id: str, values: Mapping[str, Any], *, producer: str) -> None:
        """Collect traits (applied by :meth:`flush`; unchanged values are not rewritten)."""
        for name in values:
            if not _TRAIT_NAME.fullmatch(name):
                raise ValueError(f"trait name must be '<namespace>.<key>' in lower snake case, got {name!r}")
        bucket = self._traits.setdefault(customer_id, {})
        for name, value in values.items():
            bucket[name] = (value, producer)

    def emit_action(self, action: Action) -> None:
        """Queue a closed-loop action (consent is checked when it is enqueued)."""
        self._actions.append(action)

    def emit_event(self, name: str, customer_id: str, payload: Mapping[str, Any]) -> None:
        """Record an event for ``events_emitted``."""
        self._events.append({"name": name, "customer_id": customer_id, "payload": jsonable(dict(payload)),
                             "at": self.now})

    @property
    def pending(self) -> bool:
        """Whether anything was collected since the last flush."""
        return bool(self._traits or self._actions or self._events)

    def flush(self, conn: Connection | None = None) -> FlushReport:
        """Apply collected traits, write-back planning, actions and events in one transaction."""
        if conn is None:
            with self.store.begin() as own:
                return self.flush(own)
        report = FlushReport()
        traits, self._traits = self._traits, {}
        actions, self._actions = self._actions, []
        events, self._events = self._events, []
        if traits:
            report.traits_changed = self._apply_traits(conn, traits)
        if report.traits_changed and self.config is not None:
            report.writebacks = self._plan(conn, sorted(report.traits_changed))
        for action in actions:
            if self._enqueue(conn, action):
                report.actions += 1
            else:
                report.actions_dropped += 1
        if events:
            conn.execute(s.events.insert(), [
                {"name": e["name"], "customer_id": e["customer_id"], "payload": e["payload"],
                 "producer": e["name"].split(".", 1)[0], "at": e["at"]} for e in events
            ])
            report.events = events
        return report

    commit = flush

    def _apply_traits(
        self, conn: Connection, traits: dict[str, dict[str, tuple[Any, str]]]
    ) -> dict[str, list[str]]:
        t = s.traits
        survivor = resolve_aliases(conn, traits)
        merged: dict[str, dict[str, tuple[Any, str]]] = {}
        for cid, values in traits.items():
            merged.setdefault(survivor[cid], {}).update(values)
        live = set()
        ids = sorted(merged)
        for i in range(0, len(ids), IN_CHUNK):
            live |= {r[0] for r in conn.execute(select(s.customers.c.id).where(
                s.customers.c.id.in_(ids[i : i + IN_CHUNK]), s.customers.c.erased.is_(False)))}
        current: dict[tuple[str, str], Any] = {}
        for i in range(0, len(ids), IN_CHUNK):
            for row in conn.execute(select(t.c.customer_id, t.c.name, t.c.value).where(
                    t.c.customer_id.in_(ids[i : i + IN_CHUNK]))):
                current[(row.customer_id, row.name)] = row.value
        rows, history = [], []
        changed: dict[str, list[str]] = {}
        for cid, values in merged.items():
            if cid not in live:
                continue
            for name, (value, producer) in values.items():
                stored = _trait_value(value)
                key = (cid, name)
                if key in current and current[key] == stored:
                    continue
                rows.append({"customer_id": cid, "name": name, "value": stored, "type": infer_trait_type(value),
                             "producer": producer, "computed_at": self.now})
                history.append({"customer_id": cid, "name": name, "old_value": current.get(key),
                                "new_value": stored, "producer": producer, "changed_at": self.now})
                changed.setdefault(cid, []).append(name)
        upsert(conn, t, rows, ["customer_id", "name"])
        if history:
            conn.execute(s.trait_history.insert(), history)
        return changed

    def _plan(self, conn: Connection, customer_ids: list[str]) -> Any:
        if not getattr(self.config, "writeback", None):
            return None
        try:
            from ..outbox import plan_writebacks
        except ImportError:  # pragma: no cover - the outbox ships with core
            logger.debug("outbox not available; write-back planning skipped")
            return None
        return plan_writebacks(conn, self.config, customer_ids, now=self.now)

    def _enqueue(self, conn: Connection, action: Action) -> bool:
        customers = load_customers(conn, [action.customer_id])
        if not customers or not customers[0].consent.allows(action.channel):
            logger.info("action %s dropped: customer %s unknown, erased or opted out of %s", action.key,
                        action.customer_id, action.channel)
            return False
        try:
            from ..outbox import enqueue_action
        except ImportError:  # pragma: no cover
            logger.debug("outbox not available; action %s not enqueued", action.key)
            return False
        writable = self.writable_sources
        if writable is None:
            writable = list(getattr(self.config, "sources", {}) or {})
        return bool(enqueue_action(conn, action, writable_sources=writable, now=self.now))


def interaction_of(row: Any) -> Interaction:
    """An :class:`~cxbridge.models.Interaction` from an ``interactions`` row."""
    data = row.data or {}
    return Interaction(
        id=row.id, customer_id=row.customer_id, source=row.source, object_type=row.object_type,
        source_id=row.source_id, channel=row.channel, type=row.type, occurred_at=row.occurred_at,
        direction=row.direction, amount=row.amount, currency=row.currency, subject=row.subject,
        content=row.content, sentiment=row.sentiment, context=data.get("context") or {},
        custom=data.get("custom") or {},
    )
