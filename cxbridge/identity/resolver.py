"""Applying identity decisions to the store, one page at a time.

:class:`IdentityResolver` links a page of customer records to golden customers inside the page's
transaction:

1. one query for every match key of the page (``identity_keys``), one for the page's current links;
2. per record, a :class:`~cxbridge.hooktypes.IdentityDecision` from the ``resolve_identity`` hook (the
   built-in :mod:`cxbridge.identity.default` decides unless a plugin does) -- records of the same page see
   each other's decisions, so two new records with one email make one customer;
3. merges first (links, keys, interactions and traits move to the survivor; the merged id becomes an alias,
   and aliases that pointed at it are re-pointed, so chains collapse to the final survivor), then the page's
   links and keys (only the differences are written);
4. golden records of every affected customer are re-assembled (:func:`cxbridge.golden.assemble`) from all
   their live linked records; customers without links left are removed (their interactions become
   unlinked, their traits go).

Tombstones and CRM merges of customer records (``deleted`` / ``merged_into``) go through
:meth:`IdentityResolver.remove`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, update

from ..golden import IN_CHUNK, Contribution, Survivorship, assemble_compact, assemble_single
from ..hooktypes import IdentityCandidate, IdentityDecision, IdentityMatch
from ..models import SourceRecord
from ..store import schema as s
from ..sync.bulk import bulk_delete, bulk_upsert, bulk_upsert_values, select_in, sqlite_in_rows
from .default import decide as default_decide
from .keys import KeyBuilder

__all__ = [
    "IDENTITY_LOCK", "Decider", "IdentityResolver", "LiveItem", "ResolveResult", "identity_lock", "key_owners",
]

logger = logging.getLogger(__name__)

Decider = Callable[[IdentityCandidate, Sequence[IdentityMatch]], IdentityDecision | None]


@dataclass(slots=True)
class LiveItem:
    """A live (not deleted) customer record of the page with its mapped patch and its previous state."""

    record: SourceRecord
    patch: dict[str, Any]
    old_patch: Mapping[str, Any] | None = None


@dataclass
class ResolveResult:
    """What a page changed: customers to notify, merges to announce, customers removed."""

    changed: set[str] = field(default_factory=set)
    merges: list[tuple[str, list[str]]] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)
    links: dict[str, str] = field(default_factory=dict)  # source_id -> golden id for the page's records


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), IN_CHUNK):
        yield items[i : i + IN_CHUNK]


class IdentityResolver:
    """Links customer records to golden customers (see the module docs).

    :param keys: builds match keys from patches.
    :param survivorship: the golden-record rule.
    :param decider: the ``resolve_identity`` hook call; None results fall back to the built-in decision.
    :param default_only: True when no plugin overrides ``resolve_identity`` (the hook call is skipped).
    """

    def __init__(
        self,
        keys: KeyBuilder,
        survivorship: Survivorship,
        decider: Decider | None = None,
        *,
        default_only: bool = True,
    ) -> None:
        self.keys = keys
        self.survivorship = survivorship
        self.decider = decider
        self.default_only = default_only or decider is None

    # ------------------------------------------------------------------------------------------ live records

    def link(
        self, conn: Connection, source: str, object_type: str, items: Sequence[LiveItem], now: datetime
    ) -> ResolveResult:
        """Link the page's live customer records; returns what changed."""
        result = ResolveResult()
        if not items:
            return result
        identity_lock(conn)
        page = _PageState(self, conn, result, now)
        current = page.current_links(source, object_type, [item.record.source_id for item in items])
        keys_of = self.keys
        item_keys = [keys_of(item.patch) for item in items]
        page_keys = {k for keys in item_keys for k in keys}
        page.load_key_owners(page_keys)
        # A record without a link, whose keys no stored record and no other record of the page has, needs no
        # decision: it gets a new customer made of it alone (most records of an initial load). The others go
        # through the decision pass, where later records see earlier ones' keys.
        key_owner, affected, local, fresh = page.key_owner, page.affected, page.local, page.fresh
        new_id = page.new_id
        repeated = _repeated_keys(item_keys) if len(page_keys) < sum(map(len, item_keys)) else _NO_KEYS
        simple = self.default_only
        links = result.links
        general: list[tuple[LiveItem, str, str]] = []  # (record, customer before merges, rule)
        link_rows: list[list[Any]] = []
        key_deletes: list[tuple[str, str, str, str]] = []
        key_rows: list[list[Any]] = []  # a pair repeated by a strange map is ignored by the insert
        for item, keys in zip(items, item_keys, strict=True):
            sid = item.record.source_id
            old_cid = cur = current.get(sid)
            isolated = cur is None and simple
            if isolated:
                for key in keys:
                    if key in key_owner or key in repeated:
                        isolated = False
                        break
            if isolated:
                cid = new_id()
                links[sid] = cid
                link_rows.append([source, object_type, sid, "customer", cid, None, "new", now])
                page.alone.append((cid, item))
            else:
                known = cur is not None or not simple
                if not known:
                    for key in keys:
                        if key in key_owner:
                            known = True
                            break
                if known:
                    cur = page.final(cur) if cur else None
                    decision = page.decide(item, keys, cur)
                    cid = page.apply(decision, cur)
                    rule = decision.rule
                    if cur and cur != cid:
                        affected.add(cur)
                else:  # new, but another record of the page shares a key: it may join this customer
                    cid = new_id()
                    fresh.add(cid)
                    rule = "new"
                general.append((item, cid, rule))
                for key in keys:
                    owners = key_owner.get(key)
                    if owners is None:
                        key_owner[key] = {cid}
                    else:
                        owners.add(cid)
                affected.add(cid)
                local[sid] = item
            # the record's keys (a key names its record; which customer that is, the link says)
            if item.old_patch is not None and old_cid:
                # every key the old patch can have stored (whatever the configuration was then), minus today's
                old_keys = keys_of.possible(item.old_patch)
                key_deletes.extend((k, source, object_type, sid) for k in old_keys.difference(keys))
                key_rows.extend([k, source, object_type, sid] for k in keys if k not in old_keys)
            else:
                for key in keys:
                    key_rows.append([key, source, object_type, sid])
        page.flush_merges(reason_prefix="identity")
        # links of the decided records, final ids only
        merged = bool(page.alias)
        for item, cid, rule in general:
            sid = item.record.source_id
            if merged:
                cid = page.final(cid)
            links[sid] = cid
            if current.get(sid) != cid:
                link_rows.append([source, object_type, sid, "customer", cid, None, rule, now])
        bulk_upsert_values(conn, s.source_links, _LINK_COLS, link_rows, ["source", "object_type", "source_id"])
        bulk_delete(conn, s.identity_keys, _KEY_COLS, key_deletes)
        # sorted: neighbouring inserts land in the same b-tree pages (email keys arrive in random order)
        key_rows.sort(key=_FIRST)
        bulk_upsert_values(conn, s.identity_keys, _KEY_COLS, key_rows, _KEY_COLS, [])
        page.recompute(source, object_type)
        return result

    # ------------------------------------------------------------------------------------ tombstones, merges

    def remove(
        self,
        conn: Connection,
        source: str,
        object_type: str,
        tombstones: Sequence[tuple[str, str | None, Mapping[str, Any] | None]],
        now: datetime,
    ) -> ResolveResult:
        """Unlink deleted customer records; for ``merged_into`` records merge their golden customer into the
        survivor record's.

        :param tombstones: ``(source_id, merged_into or None, previous mapped patch or None)``.
        """
        result = ResolveResult()
        if not tombstones:
            return result
        identity_lock(conn)
        page = _PageState(self, conn, result, now)
        ids = [t[0] for t in tombstones]
        survivors = [t[1] for t in tombstones if t[1]]
        current = page.current_links(source, object_type, [*ids, *survivors])
        link_deletes: list[tuple[str, str, str]] = []
        key_deletes: list[tuple[str, str, str, str]] = []
        pre_links: list[dict[str, Any]] = []
        for sid, merged_into, old_patch in tombstones:
            cid = current.get(sid)
            if cid is None:
                continue
            cid = page.final(cid)
            link_deletes.append((source, object_type, sid))
            if old_patch is not None:
                key_deletes.extend((k, source, object_type, sid) for k in self.keys.possible(old_patch))
            page.affected.add(cid)
            if merged_into:
                target = current.get(merged_into)
                if target is None:
                    # The survivor record was not synced yet: pre-link it to this golden id so the id survives.
                    current[merged_into] = cid
                    pre_links.append({
                        "source": source, "object_type": object_type, "source_id": merged_into,
                        "entity": "customer", "customer_id": cid, "organization_id": None,
                        "rule": f"crm-merge:{source}", "linked_at": now,
                    })
                else:
                    target = page.final(target)
                    if target != cid:
                        page.merge(target, [cid])
                        page.affected.add(target)
        page.flush_merges(reason_prefix=f"crm-merge:{source}")
        bulk_delete(conn, s.source_links, ["source", "object_type", "source_id"], link_deletes)
        # A record without a previous patch never stored keys (keys are written with the patch they come from);
        # keys left behind otherwise would name no link and match nobody.
        bulk_delete(conn, s.identity_keys, _KEY_COLS, key_deletes)
        bulk_upsert(conn, s.source_links, pre_links, ["source", "object_type", "source_id"], [])
        page.recompute(source, object_type)
        return result


_NEW = IdentityDecision(action="new", rule="new")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: every 10-bit value as two Crockford base32 digits (13 lookups encode the 130 bits of an id)
_PAIRS = [_CROCKFORD[i >> 5] + _CROCKFORD[i & 31] for i in range(1024)]
_LOW_BITS = 40  # ids of one page differ in the low 40 bits (8 digits); the 18 digits above are cached


def encode_id_body(value: int) -> str:
    """The 26 Crockford base32 digits of a 128-bit value (the body of :func:`cxbridge.store.ops.new_id`)."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -10, -10)])


class _Ids:
    """Golden ids for one page: the same format as :func:`cxbridge.store.ops.new_id` (48-bit milliseconds +
    80 random bits, Crockford base32), random base per page, +1 per id -- so ids stay time-sortable and
    unique while costing four table lookups each (the high digits change only on a carry)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.next: int | None = None
        self._high = -1
        self._head = ""

    def __call__(self) -> str:
        if self.next is None:
            ms = time.time_ns() // 1_000_000
            self.next = (ms << 80) | int.from_bytes(os.urandom(10), "big") >> 1  # headroom for +1 steps
        value, self.next = self.next, self.next + 1
        high = value >> _LOW_BITS
        if high != self._high:
            self._high = high
            self._head = f"{self.prefix}_{encode_id_body(value)[:18]}"
        pairs = _PAIRS
        return (self._head + pairs[(value >> 30) & 1023] + pairs[(value >> 20) & 1023]
                + pairs[(value >> 10) & 1023] + pairs[value & 1023])


_NO_KEYS: frozenset[str] = frozenset()


def _repeated_keys(item_keys: Sequence[tuple[str, ...]]) -> set[str]:
    """Keys that more than one record of the page has."""
    seen: set[str] = set()
    repeated: set[str] = set()
    for keys in item_keys:
        for key in keys:
            if key in seen:
                repeated.add(key)
            else:
                seen.add(key)
    return repeated


def key_owners(conn: Connection, keys: Sequence[str]) -> list[tuple[str, str]]:
    """``(key, golden id)`` for every stored record that has one of ``keys`` and is linked to a customer.

    A key names its source record; the record's link names the customer, so keys never go stale when customers
    merge. One statement per 5,000 keys (SQLite, :func:`cxbridge.sync.bulk.sqlite_in_rows`) or per 500 (other
    backends).
    """
    if not keys:
        return []
    k, sl = s.identity_keys, s.source_links
    if conn.dialect.name != "sqlite":
        out: list[tuple[str, str]] = []
        joined = k.join(sl, and_(sl.c.source == k.c.source, sl.c.object_type == k.c.object_type,
                                 sl.c.source_id == k.c.source_id))
        for part in _chunks(list(keys)):
            query = select(k.c.key, sl.c.customer_id).select_from(joined).where(
                k.c.key.in_(part), sl.c.customer_id.is_not(None))
            out.extend((key, cid) for key, cid in conn.execute(query))
        return out
    return sqlite_in_rows(conn, _KEY_OWNERS_SQL, (), keys)


_KEY_OWNERS_SQL = (
    "SELECT k.key, l.customer_id FROM identity_keys AS k JOIN source_links AS l ON l.source = k.source"
    " AND l.object_type = k.object_type AND l.source_id = k.source_id"
    " WHERE l.customer_id IS NOT NULL AND k.key IN ("
)


#: PostgreSQL advisory lock key of identity resolution ("cxbr").
IDENTITY_LOCK = 0x63786272


def identity_lock(conn: Connection) -> None:
    """Serialize identity resolution between concurrent page transactions (workers, parallel streams).

    Two transactions that both see no customer with ``email:ann@...`` would each create one; the lock makes
    the second wait until the first committed its keys. SQLite needs nothing: ``BEGIN IMMEDIATE`` already
    serializes writers. PostgreSQL: a transaction-level advisory lock, released at commit.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({IDENTITY_LOCK})")


_LINK_COLS = (
    "source", "object_type", "source_id", "entity", "customer_id", "organization_id", "rule", "linked_at"
)
_KEY_COLS = ("key", "source", "object_type", "source_id")
_FIRST = itemgetter(0)


class _PageState:
    """Working state of one page's identity pass."""

    def __init__(self, resolver: IdentityResolver, conn: Connection, result: ResolveResult, now: datetime):
        self.r = resolver
        self.conn = conn
        self.result = result
        self.now = now
        self.key_owner: dict[str, set[str]] = {}
        self.alias: dict[str, str] = {}  # merged id -> survivor (this page)
        self.pending_merges: list[tuple[str, list[str]]] = []
        self.merge_rule: dict[str, str] = {}
        self.fresh: set[str] = set()  # created in this page, all links local
        self.alone: list[tuple[str, LiveItem]] = []  # customers made of one record that matches nothing
        self.affected: set[str] = set()
        self.local: dict[str, LiveItem] = {}
        self.new_id = _Ids("cus")

    def current_links(self, source: str, object_type: str, ids: Sequence[str]) -> dict[str, str]:
        rows = select_in(self.conn, s.source_links, ("source_id", "customer_id"),
                         {"source": source, "object_type": object_type}, "source_id", list(dict.fromkeys(ids)))
        return {sid: cid for sid, cid in rows if cid}

    def load_key_owners(self, keys: set[str]) -> None:
        owners = self.key_owner
        for key, cid in key_owners(self.conn, sorted(keys)):
            owners.setdefault(key, set()).add(cid)

    def final(self, cid: str) -> str:
        seen = 0
        while cid in self.alias and seen < 1000:
            cid = self.alias[cid]
            seen += 1
        return cid

    def decide(self, item: LiveItem, keys: tuple[str, ...], current: str | None) -> IdentityDecision:
        shared: dict[str, list[str]] = {}
        for key in keys:
            for cid in self.key_owner.get(key, ()):
                shared.setdefault(self.final(cid), []).append(key)
        if not shared and current is None and self.r.default_only:
            return _NEW  # the common case of an initial load: nothing to decide
        matches = [
            IdentityMatch(customer_id=cid, keys=tuple(ks))
            for cid, ks in sorted(shared.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        ]
        candidate = IdentityCandidate(record=item.record, keys=keys, patch=item.patch, current_customer_id=current)
        decision = None
        if not self.r.default_only and self.r.decider is not None:
            decision = self.r.decider(candidate, matches)
        return decision or default_decide(candidate, matches)

    def apply(self, decision: IdentityDecision, current: str | None) -> str:
        if decision.action == "new" or not decision.customer_id:
            cid = self.new_id()
            self.fresh.add(cid)
            return cid
        survivor = self.final(decision.customer_id)
        if decision.action == "merge":
            others = [self.final(m) for m in decision.merge_ids]
            others = [m for m in dict.fromkeys(others) if m != survivor]
            if others:
                self.merge(survivor, others, rule=decision.rule)
        return survivor

    def merge(self, survivor: str, merged: list[str], rule: str = "") -> None:
        for m in merged:
            self.alias[m] = survivor
            self.affected.discard(m)
            self.merge_rule.setdefault(m, rule)
        self.fresh.discard(survivor)
        self.pending_merges.append((survivor, merged))

    def flush_merges(self, reason_prefix: str) -> None:
        """Write the page's merges: everything of a merged id moves to its final survivor."""
        if not self.pending_merges:
            return
        conn, now = self.conn, self.now
        final_of: dict[str, str] = {m: self.final(m) for _s, ms in self.pending_merges for m in ms}
        by_survivor: dict[str, list[str]] = {}
        for m, survivor in final_of.items():
            by_survivor.setdefault(survivor, []).append(m)
        for survivor, merged in by_survivor.items():
            stored = [m for m in merged if m not in self.fresh]
            self.fresh.difference_update(merged)
            for table, col in ((s.source_links, "customer_id"), (s.interactions, "customer_id"),
                               (s.customer_aliases, "customer_id")):
                if stored:
                    conn.execute(update(table).where(table.c[col].in_(stored)).values({col: survivor}))
            if stored:
                self._move_traits(survivor, stored)
                conn.execute(delete(s.customers).where(s.customers.c.id.in_(stored)))
            alias_rows = [
                {"alias_id": m, "customer_id": survivor, "created_at": now,
                 "reason": (f"identity:{self.merge_rule.get(m, '')}" if reason_prefix == "identity"
                            else reason_prefix)[:64]}
                for m in stored
            ]
            bulk_upsert(conn, s.customer_aliases, alias_rows, ["alias_id"])
            if stored:
                self.result.merges.append((survivor, stored))
            self.affected.add(survivor)
        self.pending_merges.clear()

    def _move_traits(self, survivor: str, merged: list[str]) -> None:
        t = s.traits
        have = {name for (name,) in self.conn.execute(select(t.c.name).where(t.c.customer_id == survivor))}
        rows = self.conn.execute(select(t).where(t.c.customer_id.in_(merged)).order_by(t.c.computed_at)).all()
        moved: dict[str, Any] = {}
        for row in rows:
            if row.name not in have:
                moved[row.name] = row
        self.conn.execute(delete(t).where(t.c.customer_id.in_(merged)))
        bulk_upsert(self.conn, t, [
            {"customer_id": survivor, "name": r.name, "value": r.value, "type": r.type, "producer": r.producer,
             "computed_at": r.computed_at} for r in moved.values()
        ], ["customer_id", "name"])

    # ---------------------------------------------------------------------------------------------- golden

    def recompute(self, source: str, object_type: str) -> None:
        affected = {self.final(c) for c in self.affected} if self.alias else self.affected
        if not affected and not self.alone:
            return
        fresh = affected & self.fresh
        # a customer created in this page (beside the ones of one record alone) has only this page's records
        contributions: dict[str, list[Contribution]] = {}
        if fresh:
            links = self.result.links
            for sid, item in self.local.items():
                cid = links.get(sid, "")
                if cid in fresh:
                    contributions.setdefault(cid, []).append(
                        Contribution(source, object_type, sid, item.record.modstamp, item.patch))
        stored = sorted(affected - fresh)
        for cid in stored:
            contributions[cid] = []
        existing: dict[str, Any] = {}
        sl, sr, cu = s.source_links, s.source_records, s.customers
        for part in _chunks(stored):
            query = (
                select(sl.c.customer_id, sr.c.source, sr.c.object_type, sr.c.source_id, sr.c.modstamp, sr.c.mapped)
                .join(sr, and_(sr.c.source == sl.c.source, sr.c.object_type == sl.c.object_type,
                               sr.c.source_id == sl.c.source_id))
                .where(sl.c.customer_id.in_(part), sr.c.deleted.is_(False))
            )
            for row in self.conn.execute(query):
                contributions[row.customer_id].append(
                    Contribution(row.source, row.object_type, row.source_id, row.modstamp, row.mapped or {})
                )
            for crow in self.conn.execute(
                select(cu.c.id, cu.c.data, cu.c.provenance, cu.c.created_at, cu.c.version).where(cu.c.id.in_(part))
            ):
                existing[crow.id] = crow
        empty = [c for c in stored if not contributions[c]]
        still_linked = set()
        for part in _chunks(empty):
            still_linked |= {
                cid for (cid,) in self.conn.execute(
                    select(sl.c.customer_id).where(sl.c.customer_id.in_(part)).group_by(sl.c.customer_id)
                    .having(func.count() > 0)
                )
            }
        removed = [c for c in empty if c not in still_linked and c in existing]
        if removed:
            self._remove_customers(removed)
        rows = []
        now, changed, rule = self.now, self.result.changed, self.r.survivorship
        for cid, item in self.alone:
            record = item.record
            data, prov = assemble_single(source, object_type, record.source_id, record.modstamp, item.patch)
            rows.append(_customer_row(cid, data, prov, None, now))
        changed.update(cid for cid, _item in self.alone)
        for cid in sorted(affected):
            contribs = contributions.get(cid)
            if not contribs:
                continue
            data, prov = assemble_compact(contribs, rule)
            old = existing.get(cid)
            if old is not None and old.data == data and old.provenance == prov:
                continue
            rows.append(_customer_row(cid, data, prov, old, now))
            changed.add(cid)
        bulk_upsert_values(self.conn, s.customers, _CUSTOMER_COLS, rows, ["id"])

    def _remove_customers(self, ids: list[str]) -> None:
        conn = self.conn
        conn.execute(update(s.interactions).where(s.interactions.c.customer_id.in_(ids)).values(customer_id=None))
        conn.execute(delete(s.traits).where(s.traits.c.customer_id.in_(ids)))
        conn.execute(delete(s.customer_aliases).where(s.customer_aliases.c.customer_id.in_(ids)))
        conn.execute(delete(s.customers).where(s.customers.c.id.in_(ids)))
        self.result.removed.update(ids)
        self.result.changed.difference_update(ids)


_CUSTOMER_COLS = (
    "id", "data", "provenance", "display_name", "primary_email", "primary_phone", "organization_id", "erased",
    "processing_opt_out", "version", "created_at", "updated_at",
)


def _customer_row(cid: str, data: dict[str, Any], prov: dict[str, Any], old: Any, now: datetime) -> list[Any]:
    """The ``customers`` row (values in ``_CUSTOMER_COLS`` order)."""
    emails, phones = data.get("emails") or [], data.get("phones") or []
    full = data.get("full_name")
    if not full:
        first, last = data.get("first_name"), data.get("last_name")
        full = f"{first} {last}" if first and last else (first or last or "")
    consent = data.get("consent") or {}
    return [
        cid,
        data,
        prov,
        (full or (emails[0] if emails else cid))[:512],
        emails[0] if emails else None,
        phones[0] if phones else None,
        data.get("organization_id"),
        False,
        bool(consent.get("processing_opt_out")),
        (old.version + 1) if old is not None else 1,
        old.created_at if old is not None else now,
        now,
    ]
