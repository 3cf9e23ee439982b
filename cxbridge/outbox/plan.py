"""Planning writes: write-back rules and closed-loop actions become outbox rows.

:func:`plan_writebacks` runs in the caller's transaction (the sync engine calls it after plugins set traits)
and decides, per rule, customer and linked CRM record, whether the CRM needs the value:

1. the customer must allow the rule's consent channel (not erased, not opted out) -- else ``consent``;
2. the record must be live in the mirror (not deleted or merged) -- else ``deleted``;
3. the CRM's last known value must differ -- else ``unchanged`` (or ``already_written`` when that value is
   our own last write and the mirror has not been re-read since). The last known value is the mirror's field,
   unless we wrote the field after the mirror's modstamp: then it is what we wrote (the mirror is stale);
4. if we wrote the field before and the mirror shows another value, stamped after our write, someone edited
   it in the CRM: skip unless the rule says ``overwrite_human_edits`` -- ``human_edit``.

An enqueued row's idempotency key hashes the record, field, value and the write-back state it was planned
against, so planning the same intent twice enqueues once, while a value that comes back later (A -> B -> A)
is a new intent. Older pending rows for the same field are marked ``skipped`` (superseded), so only the
newest intent is ever sent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select, tuple_, update

from ..hooktypes import Action
from ..models import Consent
from ..store import schema
from ..store.ops import chunked, upsert
from .values import idempotency_key, rule_tag, values_equal

__all__ = ["PlanReport", "customer_allows", "enqueue_action", "plan_writebacks"]

logger = logging.getLogger(__name__)

_CHUNK = 500


@dataclass
class PlanReport:
    """What :func:`plan_writebacks` decided: rows enqueued and skips by reason."""

    enqueued: int = 0
    superseded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def customer_allows(row: Mapping[str, Any] | None, channel: str) -> bool:
    """Whether the ``customers`` row allows an outbound action on ``channel`` (missing customer: no)."""
    if row is None or row.get("erased") or row.get("processing_opt_out"):
        return False
    data = row.get("data") or {}
    raw = data.get("consent") if isinstance(data, Mapping) else None
    try:
        consent = Consent.model_validate(raw or {})
    except ValueError:
        logger.warning("customer %s has unreadable consent %r; treating as opted out", row.get("id"), raw)
        return False
    return consent.allows(channel)


def _rules(config_or_rules: Any) -> list[Any]:
    rules = getattr(config_or_rules, "writeback", config_or_rules)
    return list(rules or [])


def _in(cols: Sequence[Any], keys: Iterable[tuple[Any, ...]]) -> Any:
    return tuple_(*cols).in_(list(keys))


def plan_writebacks(conn: Connection, config: Any, customer_ids: Sequence[str], *, now: datetime) -> PlanReport:
    """Enqueue the write-backs that ``customer_ids`` need after their traits changed.

    :param conn: a connection in the caller's (write) transaction.
    :param config: the :class:`~cxbridge.config.Config` (its ``writeback`` rules) or a list of rules.
    :param customer_ids: golden ids whose traits may have changed (aliases are not resolved here).
    :param now: the current time (UTC).
    """
    report = PlanReport()
    rules = _rules(config)
    if not rules or not customer_ids:
        return report
    ids = list(dict.fromkeys(customer_ids))
    for part in chunked(ids, _CHUNK):
        _plan_chunk(conn, rules, list(part), now, report)
    if report.enqueued or report.superseded:
        logger.info(
            "write-back planned: %d enqueued, %d superseded, skipped %s",
            report.enqueued,
            report.superseded,
            dict(report.skipped),
        )
    return report


def _plan_chunk(conn: Connection, rules: list[Any], ids: list[str], now: datetime, report: PlanReport) -> None:
    c, t, sl = schema.customers, schema.traits, schema.source_links
    customers = {
        r.id: dict(r._mapping)
        for r in conn.execute(select(c.c.id, c.c.data, c.c.erased, c.c.processing_opt_out).where(c.c.id.in_(ids)))
    }
    trait_names = sorted({rule.trait for rule in rules})
    traits: dict[tuple[str, str], Any] = {
        (r.customer_id, r.name): r.value
        for r in conn.execute(
            select(t.c.customer_id, t.c.name, t.c.value).where(t.c.customer_id.in_(ids), t.c.name.in_(trait_names))
        )
    }
    targets = sorted({(rule.source, rule.object_type) for rule in rules})
    links: dict[tuple[str, str, str], list[str]] = {}
    for r in conn.execute(
        select(sl.c.customer_id, sl.c.source, sl.c.object_type, sl.c.source_id)
        .where(sl.c.customer_id.in_(ids), _in([sl.c.source, sl.c.object_type], targets))
        .order_by(sl.c.source_id)
    ):
        links.setdefault((r.customer_id, r.source, r.object_type), []).append(r.source_id)
    refs = sorted({(s, o, sid) for (_, s, o), sids in links.items() for sid in sids})
    mirror, state, pending = _load_record_state(conn, refs)
    new_rows: list[dict[str, Any]] = []

    for rule in rules:
        channel = rule.consent
        tag = rule_tag("writeback", rule.trait, channel)
        for cid in ids:
            record_ids = links.get((cid, rule.source, rule.object_type), [])
            if not record_ids:
                continue
            allowed = customer_allows(customers.get(cid), channel)
            has_trait = (cid, rule.trait) in traits
            target = rule.apply(traits.get((cid, rule.trait)))
            for sid in record_ids:
                ref = (rule.source, rule.object_type, sid)
                decision, key = "enqueue", None
                m = mirror.get(ref)
                if not allowed:
                    decision = "consent"
                elif not has_trait:
                    decision = "no_trait"
                elif m is not None and (m["deleted"] or m["merged_into"]):
                    decision = "deleted"
                else:
                    decision = _decide(rule, target, m, state.get((*ref, rule.field)))
                if decision == "enqueue":
                    ws = state.get((*ref, rule.field))
                    basis = ws["written_at"].isoformat() if ws else ""
                    key = idempotency_key("update", *ref, rule.field, target, basis)
                report.superseded += _supersede(conn, pending.get((*ref, rule.field), []), key, decision, now)
                if decision != "enqueue":
                    report.skipped[decision] += 1
                    continue
                assert key is not None
                new_rows.append(
                    {
                        "idempotency_key": key,
                        "source": rule.source,
                        "object_type": rule.object_type,
                        "action": "update",
                        "source_id": sid,
                        "customer_id": cid,
                        "fields": {rule.field: target},
                        "associations": {},
                        "rule": tag,
                        "basis_modstamp": m["modstamp"] if m else None,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
    report.enqueued += _insert_new(conn, new_rows)


def _insert_new(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert outbox rows whose idempotency key is new; returns how many were enqueued.

    A row with the same key that was superseded earlier (A -> B -> A before anything was sent) is revived
    instead; rows already sent or dead keep their state (a dead letter is re-queued by an operator).
    """
    if not rows:
        return 0
    ob = schema.outbox
    rows = list({r["idempotency_key"]: r for r in rows}.values())
    existing: dict[str, str] = {}
    for part in chunked([r["idempotency_key"] for r in rows], _CHUNK):
        query = select(ob.c.idempotency_key, ob.c.status).where(ob.c.idempotency_key.in_(part))
        existing.update((key, status) for key, status in conn.execute(query))
    fresh = [r for r in rows if r["idempotency_key"] not in existing]
    revive = [r for r in rows if existing.get(r["idempotency_key"]) == "skipped"]
    upsert(conn, ob, fresh, key_cols=["idempotency_key"], update_cols=[])
    for row in revive:
        conn.execute(
            update(ob)
            .where(ob.c.idempotency_key == row["idempotency_key"], ob.c.status == "skipped")
            .values(status="pending", attempts=0, next_attempt_at=row["next_attempt_at"], last_error=None)
        )
    return len(fresh) + len(revive)


def _decide(rule: Any, target: Any, m: Mapping[str, Any] | None, ws: Mapping[str, Any] | None) -> str:
    field_name = rule.field
    fields = (m["fields"] or {}) if m is not None else {}
    mirror_has = field_name in fields
    mirror_value = fields.get(field_name)
    if ws is None or not ws["by_us"]:
        if mirror_has and values_equal(target, mirror_value):
            return "unchanged"
        if not mirror_has and ws is not None and values_equal(target, ws["value"]):
            return "unchanged"
        return "enqueue"
    stamp = (m["modstamp"] or m["last_seen"]) if m is not None else None
    if not mirror_has or stamp is None or stamp <= ws["written_at"]:
        # the mirror has seen nothing after our last write: the CRM holds what we wrote
        return "already_written" if values_equal(target, ws["value"]) else "enqueue"
    if not values_equal(ws["value"], mirror_value) and not rule.overwrite_human_edits:
        return "human_edit"  # changed in the CRM by someone else after our write
    return "unchanged" if values_equal(target, mirror_value) else "enqueue"


def _load_record_state(
    conn: Connection, refs: list[tuple[str, str, str]]
) -> tuple[
    dict[tuple[str, str, str], dict[str, Any]],
    dict[tuple[str, str, str, str], dict[str, Any]],
    dict[tuple[str, str, str, str], list[dict[str, Any]]],
]:
    sr, ws, ob = schema.source_records, schema.writeback_state, schema.outbox
    mirror: dict[tuple[str, str, str], dict[str, Any]] = {}
    state: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    pending: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for part in chunked(refs, _CHUNK):
        for r in conn.execute(
            select(
                sr.c.source,
                sr.c.object_type,
                sr.c.source_id,
                sr.c.fields,
                sr.c.modstamp,
                sr.c.last_seen,
                sr.c.deleted,
                sr.c.merged_into,
            ).where(_in([sr.c.source, sr.c.object_type, sr.c.source_id], part))
        ):
            mirror[(r.source, r.object_type, r.source_id)] = dict(r._mapping)
        for w in conn.execute(select(ws).where(_in([ws.c.source, ws.c.object_type, ws.c.source_id], part))):
            state[(w.source, w.object_type, w.source_id, w.field)] = dict(w._mapping)
        for p in conn.execute(
            select(
                ob.c.id, ob.c.idempotency_key, ob.c.source, ob.c.object_type, ob.c.source_id, ob.c.fields
            ).where(
                ob.c.status == "pending",
                ob.c.action == "update",
                _in([ob.c.source, ob.c.object_type, ob.c.source_id], part),
            )
        ):
            for f in p.fields or {}:
                pending.setdefault((p.source, p.object_type, p.source_id, f), []).append(dict(p._mapping))
    return mirror, state, pending


def _supersede(
    conn: Connection, rows: list[dict[str, Any]], keep_key: str | None, decision: str, now: datetime
) -> int:
    """Mark pending rows for one record field ``skipped``, except the one with ``keep_key``."""
    drop = [r["id"] for r in rows if r["idempotency_key"] != keep_key]
    if not drop:
        return 0
    reason = "superseded by a newer value" if decision == "enqueue" else f"superseded: {decision}"
    ob = schema.outbox
    conn.execute(
        update(ob)
        .where(ob.c.id.in_(drop), ob.c.status == "pending")
        .values(status="skipped", last_error=reason, sent_at=None)
    )
    rows[:] = [r for r in rows if r["id"] not in drop]
    return len(drop)


def enqueue_action(
    conn: Connection,
    action: Action,
    *,
    writable_sources: Collection[str],
    now: datetime,
) -> int:
    """Enqueue a closed-loop action as one ``create`` op per linked source that can write.

    The op is ``WriteOp(action="create", object_type=action.kind, fields={subject, body, due_at, priority},
    associations={<linked object type>: [source ids]})``; adapters map the generic ``task`` / ``note`` object
    types to their own and create idempotently by ``op.key`` where the CRM allows.

    :param writable_sources: configured sources whose adapter has the ``write`` capability.
    :returns: the number of rows enqueued (0 when consent forbids it, nothing is linked, or it was enqueued
        before under the same ``action.key``).
    """
    c, sl, sr = schema.customers, schema.source_links, schema.source_records
    row = conn.execute(
        select(c.c.id, c.c.data, c.c.erased, c.c.processing_opt_out).where(c.c.id == action.customer_id)
    ).first()
    if not customer_allows(dict(row._mapping) if row else None, action.channel):
        logger.info("action %s for %s dropped: consent (%s)", action.key, action.customer_id, action.channel)
        return 0
    linked = conn.execute(
        select(sl.c.source, sl.c.object_type, sl.c.source_id)
        .select_from(
            sl.outerjoin(
                sr,
                and_(
                    sr.c.source == sl.c.source,
                    sr.c.object_type == sl.c.object_type,
                    sr.c.source_id == sl.c.source_id,
                ),
            )
        )
        .where(
            sl.c.customer_id == action.customer_id,
            sl.c.entity == "customer",
            sr.c.deleted.is_not(True),
            sr.c.merged_into.is_(None),
        )
        .order_by(sl.c.source, sl.c.object_type, sl.c.source_id)
    ).all()
    by_source: dict[str, dict[str, list[str]]] = {}
    for r in linked:
        if r.source not in writable_sources or (action.sources and r.source not in action.sources):
            continue
        by_source.setdefault(r.source, {}).setdefault(r.object_type, []).append(r.source_id)
    fields = {
        "subject": action.subject,
        "body": action.body,
        "due_at": action.due_at.isoformat() if action.due_at else None,
        "priority": action.priority,
    }
    rows = [
        {
            "idempotency_key": idempotency_key("create", action.kind, action.key, source),
            "source": source,
            "object_type": action.kind,
            "action": "create",
            "customer_id": action.customer_id,
            "fields": fields,
            "associations": assoc,
            "rule": rule_tag("action", action.producer or action.kind, action.channel),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for source, assoc in sorted(by_source.items())
    ]
    return _insert_new(conn, rows)
