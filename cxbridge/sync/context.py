"""The :class:`~cxbridge.hooktypes.PluginContext` implementation: a plugin's door to the store.

:class:`StoreContext` reads golden customers and interactions (batched, alias-aware, erased customers
skipped) and *collects* what plugins produce -- traits, actions, events. :meth:`StoreContext.flush` applies
them in one transaction: traits whose value changed are written (with ``trait_history``), write-backs for
those customers are planned through the outbox, actions are enqueued (consent checked), events stored and
returned so the caller can hand them to ``events_emitted``.

For bulk analytics (model fits over every customer) :meth:`StoreContext.iter_interaction_rows` streams plain
``(customer_id, occurred_at, amount, currency, type)`` tuples, keyset-paged by customer, and
:meth:`StoreContext.count_customers` counts in one query; :meth:`StoreContext.get_state` /
:meth:`StoreContext.set_state` keep a plugin's small JSON state (a fitted model) in ``source_state`` under
source ``plugin:<namespace>`` -- committed at once, shared by every process using the store.

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
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, String, cast, func, or_, select, type_coerce
from sqlalchemy import Float as SAFloat

from ..golden import load_customers, resolve_aliases
from ..hooktypes import Action
from ..models import Channel, Customer, Direction, Interaction, InteractionType, TraitType, _assume_valid
from ..store import Store
from ..store import schema as s
from ..store.ops import upsert, utcnow
from .bulk import bulk_upsert_values
from .convert import jsonable

__all__ = ["FlushReport", "InteractionRow", "StoreContext", "infer_trait_type"]

#: One row of :meth:`StoreContext.iter_interaction_rows`: ``(customer_id, occurred_at, amount, currency, type)``.
InteractionRow = tuple[str, datetime, "float | None", "str | None", str]

logger = logging.getLogger(__name__)

_TRAIT_COLS = ("customer_id", "name", "value", "type", "producer", "computed_at")
_HISTORY_COLS = ("customer_id", "name", "old_value", "new_value", "producer", "changed_at")

#: Ids per ``IN (...)`` query when reading: 1,000 changed customers in one round trip per table.
READ_CHUNK = 1000

_TRAIT_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
_STATE_KEY = re.compile(r"([a-z][a-z0-9_]*)\.([A-Za-z0-9_.:-]{1,200})")


def state_address(key: str) -> tuple[str, str]:
    """``("plugin:<namespace>", "<name>")``: where the plugin-state ``key`` lives in ``source_state``.

    Raises:
        ValueError: the key is not ``<namespace>.<name>``.
    """
    match = _STATE_KEY.fullmatch(key)
    if match is None:
        raise ValueError(f"plugin state key must be '<namespace>.<name>' (e.g. 'segments.model'), got {key!r}")
    return f"plugin:{match.group(1)}", match.group(2)


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
        """Interactions per requested id (aliases resolved), oldest first; deleted ones skipped.

        Rows come from our own store, where they were validated on the way in, so the models are built with
        ``model_construct`` (no re-validation; about 4x cheaper per row); ids are read in chunks of
        ``READ_CHUNK`` per ``IN`` query.
        """
        it = s.interactions
        out: dict[str, list[Interaction]] = {cid: [] for cid in customer_ids}
        kinds = [str(getattr(t, "value", t)) for t in types] if types else None
        with self.store.connect() as conn:
            survivor = resolve_aliases(conn, customer_ids)
            wanted = sorted(set(survivor.values()))
            by_customer: dict[str, list[Interaction]] = {}
            base = _interactions_query(conn.dialect.name == "sqlite")
            for i in range(0, len(wanted), READ_CHUNK):
                query = base.where(it.c.customer_id.in_(wanted[i : i + READ_CHUNK]), it.c.deleted.is_(False))
                if kinds:
                    query = query.where(it.c.type.in_(kinds))
                query = query.order_by(it.c.customer_id, it.c.occurred_at, it.c.id)
                for row in conn.execute(query):
                    by_customer.setdefault(row[1], []).append(_stored_interaction(row))
        for cid in customer_ids:
            out[cid] = by_customer.get(survivor.get(cid, cid), [])
        return out

    def iter_interaction_rows(
        self,
        types: Sequence[str] | None = None,
        *,
        batch_size: int = 10_000,
        include_processing_opt_out: bool = False,
    ) -> Iterator[list[InteractionRow]]:
        """Stream interactions of live customers as plain tuples, ordered by customer, for bulk analytics.

        Each row is ``(customer_id, occurred_at, amount, currency, type)`` -- ``occurred_at`` an aware UTC
        datetime, ``amount`` a float or None, ``type`` the plain string (``"purchase"``). Batches hold about
        ``batch_size`` rows and never split a customer (a customer with more rows than that comes as one
        larger batch), so a consumer can aggregate per customer batch by batch. Paging is keyset paging on
        ``customer_id`` with a new connection per batch: memory stays flat and no read transaction is held
        open between batches. Deleted interactions, erased customers and (unless
        ``include_processing_opt_out``) customers who object to profiling are skipped.

        Example -- revenue per customer over a million customers::

            revenue = defaultdict(float)
            for rows in context.iter_interaction_rows(["purchase", "refund"]):
                for customer_id, occurred_at, amount, currency, kind in rows:
                    revenue[customer_id] += amount or 0.0
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        it, c = s.interactions, s.customers
        kinds = [str(getattr(t, "value", t)) for t in types] if types else None
        last: str | None = None
        while True:
            with self.store.connect() as conn:
                sqlite = conn.dialect.name == "sqlite"
                query = self._rows_query(sqlite, kinds)
                if last is not None:
                    query = query.where(it.c.customer_id > last)
                rows = _fetch(conn, query.limit(batch_size + 1), sqlite)
                if not rows:
                    return
                if len(rows) > batch_size:
                    tail = rows[-1][0]
                    cut = len(rows) - 1
                    while cut > 0 and rows[cut - 1][0] == tail:
                        cut -= 1
                    if cut:
                        del rows[cut:]
                    else:  # one customer with more rows than batch_size: all of hers, in one batch
                        whole = self._rows_query(sqlite, kinds).where(it.c.customer_id == tail)
                        rows = _fetch(conn, whole, sqlite)
                first, last = rows[0][0], rows[-1][0]
                blocked: Any = c.c.erased.is_(True)
                if not include_processing_opt_out:
                    blocked = or_(blocked, c.c.processing_opt_out.is_(True))
                skip = {r[0] for r in conn.execute(select(c.c.id).where(c.c.id >= first, c.c.id <= last, blocked))}
            batch = _rows(rows, skip, sqlite)
            if batch:
                yield batch

    @staticmethod
    def _rows_query(sqlite: bool, kinds: list[str] | None) -> Any:
        it = s.interactions
        # The amount as a float in SQL (no per-row Decimal), and on SQLite the raw ISO text of the time:
        # SQLAlchemy's regex-based DATETIME processing would cost more than the query itself on 10M rows;
        # :func:`_rows` parses with the C ``fromisoformat``.
        occurred = type_coerce(it.c.occurred_at, String) if sqlite else it.c.occurred_at
        amount = cast(it.c.amount, SAFloat)
        query = select(it.c.customer_id, occurred, amount, it.c.currency, it.c.type).where(
            it.c.customer_id.is_not(None), it.c.deleted.is_(False))
        if kinds:
            # Keyset paging must walk the (customer_id, occurred_at) index. On SQLite an indexed ``type IN``
            # tempts the planner to use the type index and sort every remaining row on every page; filtering
            # on an expression (``type || ''``) rules that index out. https://sqlite.org/optoverview.html
            kind = it.c.type.concat("") if sqlite else it.c.type
            query = query.where(kind.in_(kinds))
        return query.order_by(it.c.customer_id, it.c.occurred_at)

    def count_customers(self, interaction_types: Sequence[str] | None = None) -> int:
        """The number of live (not erased) golden customers; with ``interaction_types``, of those with at least
        one (not deleted) interaction of these types -- e.g. the purchasers, to decide whether a model fitted
        on them is still representative. One aggregate query."""
        c, it = s.customers, s.interactions
        with self.store.connect() as conn:
            if not interaction_types:
                live = select(func.count()).select_from(c).where(c.c.erased.is_(False))
                return int(conn.execute(live).scalar_one())
            kinds = [str(getattr(t, "value", t)) for t in interaction_types]
            query = (
                select(func.count(func.distinct(it.c.customer_id)))
                .select_from(it.join(c, c.c.id == it.c.customer_id))
                .where(it.c.type.in_(kinds), it.c.deleted.is_(False), c.c.erased.is_(False))
            )
            return int(conn.execute(query).scalar_one())

    # -------------------------------------------------------------------------------------- plugin state

    def get_state(self, key: str) -> Any:
        """A plugin's persisted state value (JSON), or None. ``key`` is ``"<namespace>.<name>"``.

        State lives in the store (table ``source_state``, source ``plugin:<namespace>``), so every process and
        worker sharing the store sees the same value.
        """
        source, name = state_address(key)
        st = s.source_state
        with self.store.connect() as conn:
            row = conn.execute(select(st.c.value).where(st.c.source == source, st.c.key == name)).first()
        return None if row is None else row[0]

    def set_state(self, key: str, value: Any) -> None:
        """Persist a small JSON-serialisable state value under ``"<namespace>.<name>"`` (None deletes it).

        Committed **immediately** in its own transaction -- not with :meth:`flush` -- so a fitted model is
        shared even if the batch that fitted it fails later. Last writer wins.
        """
        source, name = state_address(key)
        st = s.source_state
        with self.store.begin() as conn:
            if value is None:
                conn.execute(st.delete().where(st.c.source == source, st.c.key == name))
            else:
                row = {"source": source, "key": name, "value": jsonable(value), "updated_at": utcnow()}
                upsert(conn, st, [row], ["source", "key"])

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
        for i in range(0, len(ids), READ_CHUNK):
            live |= {r[0] for r in conn.execute(select(s.customers.c.id).where(
                s.customers.c.id.in_(ids[i : i + READ_CHUNK]), s.customers.c.erased.is_(False)))}
        current: dict[tuple[str, str], Any] = {}
        for i in range(0, len(ids), READ_CHUNK):
            for row in conn.execute(select(t.c.customer_id, t.c.name, t.c.value).where(
                    t.c.customer_id.in_(ids[i : i + READ_CHUNK]))):
                current[(row.customer_id, row.name)] = row.value
        # Rows as lists in _TRAIT_COLS / _HISTORY_COLS order for the executemany path (no per-row SQLAlchemy
        # parameter processing: that was most of a flush of 1,000 customers' ~20 traits each).
        rows: list[list[Any]] = []
        history: list[list[Any]] = []
        changed: dict[str, list[str]] = {}
        now = self.now
        for cid, values in merged.items():
            if cid not in live:
                continue
            for name, (value, producer) in values.items():
                stored = _trait_value(value)
                key = (cid, name)
                if key in current and current[key] == stored:
                    continue
                rows.append([cid, name, stored, infer_trait_type(value), producer, now])
                history.append([cid, name, current.get(key), stored, producer, now])
                changed.setdefault(cid, []).append(name)
        bulk_upsert_values(conn, t, _TRAIT_COLS, rows, ["customer_id", "name"])
        if history:
            if conn.dialect.name == "sqlite":  # insert only: the autoincrement id never conflicts
                bulk_upsert_values(conn, s.trait_history, _HISTORY_COLS, history, ["id"], [])
            else:
                conn.execute(s.trait_history.insert(), [dict(zip(_HISTORY_COLS, h, strict=True)) for h in history])
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


def _enum(kind: Any, value: Any) -> Any:
    member = kind._value2member_map_.get(value)
    return member if member is not None else kind(value)


def _construct(values: dict[str, Any]) -> Interaction:
    """An Interaction from already-valid values, without validation. Only for rows from our own store,
    validated when written (model_construct's per-field default handling cost more than reading the row)."""
    return _assume_valid(Interaction, values)


def interaction_of(row: Any) -> Interaction:
    """An :class:`~cxbridge.models.Interaction` from an ``interactions`` row (validated)."""
    data = row.data or {}
    return Interaction(
        id=row.id, customer_id=row.customer_id, source=row.source, object_type=row.object_type,
        source_id=row.source_id, channel=row.channel, type=row.type, occurred_at=row.occurred_at,
        direction=row.direction, amount=row.amount, currency=row.currency, subject=row.subject,
        content=row.content, sentiment=row.sentiment, context=data.get("context") or {},
        custom=data.get("custom") or {},
    )


def _stored_interaction(row: Any) -> Interaction:
    """An Interaction from a row of :func:`_interactions_query` -- read back from our own store, where it was
    validated when written, so built without validation (tests compare it with validated models).
    ``occurred_at`` is the raw SQLite text or a datetime."""
    (id_, customer_id, source, object_type, source_id, channel, kind, occurred, direction, amount, currency,
     subject, content, sentiment, data) = row
    if isinstance(occurred, str):
        occurred = datetime.fromisoformat(occurred).replace(tzinfo=UTC)
    data = data or {}
    return _construct({
        "id": id_, "customer_id": customer_id, "source": source, "object_type": object_type,
        "source_id": source_id, "channel": _enum(Channel, channel), "type": _enum(InteractionType, kind),
        "occurred_at": occurred, "direction": _enum(Direction, direction), "amount": amount,
        "currency": currency, "subject": subject, "content": content, "sentiment": sentiment,
        "context": data.get("context") or {}, "custom": data.get("custom") or {},
    })


def _interactions_query(sqlite: bool) -> Any:
    """The columns :func:`_stored_interaction` reads, in its order; on SQLite ``occurred_at`` as raw text
    (parsed by the C ``fromisoformat`` instead of SQLAlchemy's regex-based DATETIME processor)."""
    it = s.interactions
    occurred = type_coerce(it.c.occurred_at, String).label("occurred_at") if sqlite else it.c.occurred_at
    return select(it.c.id, it.c.customer_id, it.c.source, it.c.object_type, it.c.source_id, it.c.channel,
                  it.c.type, occurred, it.c.direction, it.c.amount, it.c.currency, it.c.subject, it.c.content,
                  it.c.sentiment, it.c.data)


def _fetch(conn: Connection, query: Any, sqlite: bool) -> list[Any]:
    """All rows of ``query``; on SQLite straight from the DBAPI cursor (the query's columns have no result
    processing there, so SQLAlchemy's Row objects would only add ~2 us per row)."""
    result = conn.execute(query)
    if sqlite:
        return list(result.cursor.fetchall())  # type: ignore[attr-defined]
    return list(result.all())


def _rows(rows: Sequence[Any], skip: set[str], sqlite: bool) -> list[InteractionRow]:
    if not sqlite:
        return [(r[0], r[1], None if r[2] is None else float(r[2]), r[3], r[4]) for r in rows if r[0] not in skip]
    parse, utc = datetime.fromisoformat, UTC
    return [(r[0], parse(r[1]).replace(tzinfo=utc), r[2], r[3], r[4]) for r in rows if r[0] not in skip]
