"""Sending the outbox to the CRMs.

:func:`deliver` works in three steps per round, each with its own short transaction, so no transaction is
held open while a CRM is called:

1. **claim** due rows (``pending`` and ``next_attempt_at <= now``; on PostgreSQL and MySQL with
   ``FOR UPDATE SKIP LOCKED`` so two workers never claim the same row) and lease them by moving
   ``next_attempt_at`` forward by ``lease_seconds``; rows whose customer meanwhile opted out or was erased
   are skipped here;
2. **send**: updates for one record are coalesced into one op, ops grouped by (source, object type, action)
   and cut to the adapter's ``write_batch_size``; ``prepare_writes`` may hold ops back; ``adapter.write``;
3. **record** each result: ok → ``sent`` (and ``writeback_state`` remembers the value as ours), retryable
   failure → ``attempts + 1`` and a later ``next_attempt_at`` (exponential backoff with jitter, at least the
   vendor's Retry-After), non-retryable or too many attempts → ``dead`` with the reason.

Crash safety: a row becomes ``sent`` only after ``adapter.write`` returned for it. After a crash between
the write and step 3 the lease expires and the row is sent again with the same idempotency key (``op.key``):
updates are idempotent by nature, creates are de-duplicated by adapters that honour the key.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pluggy
from sqlalchemy import Connection, select, update

from ..adapters import Adapter, WriteOp, WriteResult
from ..errors import RateLimited
from ..store import Store, schema
from ..store.ops import chunked, upsert, utcnow
from .plan import customer_allows
from .values import idempotency_key, parse_rule_tag

__all__ = ["DeliveryReport", "backoff_delay", "deliver"]

logger = logging.getLogger(__name__)

BACKOFF_BASE_S = 30.0
BACKOFF_CAP_S = 3600.0
HOLD_S = 300.0


@dataclass
class DeliveryReport:
    """What one :func:`deliver` call did.

    :param write_calls: ``adapter.write`` calls per source (API batches).
    """

    sent: int = 0
    retried: int = 0
    dead: int = 0
    held: int = 0
    skipped: int = 0
    write_calls: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.retried == 0 and self.dead == 0


def backoff_delay(
    attempt: int, *, rng: random.Random | None = None, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential (``base * 2**(attempt-1)``, capped) with
    "equal jitter" (half fixed, half random) so retries of many rows spread out."""
    exp = min(cap, base * 2 ** max(0, attempt - 1))
    return exp / 2 + (rng or random).uniform(0, exp / 2)


@dataclass
class _Op:
    op: WriteOp
    rows: list[dict[str, Any]]


def deliver(
    store: Store,
    adapters: Mapping[str, Adapter],
    *,
    now: datetime | None = None,
    max_attempts: int = 5,
    batch_size: int | None = None,
    pm: pluggy.PluginManager | None = None,
    lease_seconds: float = 300.0,
    claim_limit: int = 1000,
    rng: random.Random | None = None,
    on_plugin_failure: Callable[[Any], None] | None = None,
) -> DeliveryReport:
    """Send every due outbox row of the sources in ``adapters``.

    :param store: the store.
    :param adapters: source name -> adapter instance; rows of other sources stay pending.
    :param now: the current time (tests freeze it).
    :param max_attempts: a row failing this many times is dead-lettered.
    :param batch_size: cap on ops per ``adapter.write`` call (default: the adapter's ``write_batch_size``).
    :param pm: plugin manager for ``prepare_writes`` / ``writes_completed`` (each plugin isolated).
    :param lease_seconds: how long a claimed row is reserved for this worker (re-sent after a crash).
    :param claim_limit: rows claimed per round.
    :param rng: random source for jitter.
    :param on_plugin_failure: receives failures of plugins in the write-back hooks.
    """
    now = now or utcnow()
    report = DeliveryReport()
    if not adapters:
        return report
    while True:
        claimed = _claim(store, sorted(adapters), now, claim_limit, lease_seconds, report)
        if not claimed:
            break
        for (source, object_type, action), ops in _group(claimed).items():
            adapter = adapters[source]
            size = max(1, min(batch_size or adapter.write_batch_size, adapter.write_batch_size))
            for batch in chunked(ops, size):
                _send(
                    store,
                    adapter,
                    source,
                    object_type,
                    action,
                    list(batch),
                    now=now,
                    max_attempts=max_attempts,
                    pm=pm,
                    rng=rng,
                    report=report,
                    on_plugin_failure=on_plugin_failure,
                )
    if report.sent or report.retried or report.dead:
        logger.info(
            "outbox delivered: %d sent, %d to retry, %d dead, %d held, %d skipped",
            report.sent,
            report.retried,
            report.dead,
            report.held,
            report.skipped,
        )
    return report


def _claim(
    store: Store, sources: list[str], now: datetime, limit: int, lease_seconds: float, report: DeliveryReport
) -> list[dict[str, Any]]:
    ob = schema.outbox
    with store.begin() as conn:
        query = (
            select(ob)
            .where(ob.c.status == "pending", ob.c.next_attempt_at <= now, ob.c.source.in_(sources))
            .order_by(ob.c.id)
            .limit(limit)
        )
        if store.dialect in ("postgresql", "mysql", "mariadb"):
            query = query.with_for_update(skip_locked=True)
        rows = [dict(r._mapping) for r in conn.execute(query)]
        if not rows:
            return []
        allowed, denied = _check_consent(conn, rows)
        if denied:
            for reason, ids in denied.items():
                conn.execute(update(ob).where(ob.c.id.in_(ids)).values(status="skipped", last_error=reason))
                report.skipped += len(ids)
        lease_until = now + timedelta(seconds=lease_seconds)
        for part in chunked([r["id"] for r in allowed], 500):
            conn.execute(update(ob).where(ob.c.id.in_(part)).values(next_attempt_at=lease_until))
    return allowed


def _check_consent(
    conn: Connection, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    c, al = schema.customers, schema.customer_aliases
    ids = {r["customer_id"] for r in rows if r["customer_id"]}
    customers: dict[str, dict[str, Any]] = {}
    for part in chunked(sorted(ids), 500):
        customers.update(
            (r.id, dict(r._mapping))
            for r in conn.execute(
                select(c.c.id, c.c.data, c.c.erased, c.c.processing_opt_out).where(c.c.id.in_(part))
            )
        )
    missing = sorted(ids - customers.keys())
    for part in chunked(missing, 500):  # merged customers: use the survivor's consent
        for alias in conn.execute(select(al.c.alias_id, al.c.customer_id).where(al.c.alias_id.in_(part))):
            survivor = conn.execute(
                select(c.c.id, c.c.data, c.c.erased, c.c.processing_opt_out).where(c.c.id == alias.customer_id)
            ).first()
            if survivor is not None:
                customers[alias.alias_id] = dict(survivor._mapping)
    allowed: list[dict[str, Any]] = []
    denied: dict[str, list[int]] = {}
    for row in rows:
        channel = parse_rule_tag(row["rule"])[2]
        if row["customer_id"] is None or customer_allows(customers.get(row["customer_id"]), channel):
            allowed.append(row)
        else:
            reason = "customer no longer exists" if row["customer_id"] not in customers else f"consent: {channel}"
            denied.setdefault(reason, []).append(row["id"])
    return allowed, denied


def _group(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[_Op]]:
    """Coalesce updates of one record into one op; group ops by (source, object type, action)."""
    groups: dict[tuple[str, str, str], list[_Op]] = {}
    coalesced: dict[tuple[Any, ...], _Op] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        gkey = (row["source"], row["object_type"], row["action"])
        if row["action"] == "create":
            groups.setdefault(gkey, []).append(_Op(_write_op(row, row["idempotency_key"], row["fields"]), [row]))
            continue
        rkey = (*gkey, row["source_id"], row["id_property"], row["id_value"])
        existing = coalesced.get(rkey)
        if existing is None:
            item = _Op(_write_op(row, row["idempotency_key"], row["fields"]), [row])
            coalesced[rkey] = item
            groups.setdefault(gkey, []).append(item)
        else:
            existing.rows.append(row)
            fields = {k: v for r in existing.rows for k, v in (r["fields"] or {}).items()}  # later rows win
            key = idempotency_key("coalesced", sorted(r["idempotency_key"] for r in existing.rows))
            existing.op = _write_op(existing.rows[0], key, fields)
    return groups


def _write_op(row: Mapping[str, Any], key: str, fields: Mapping[str, Any]) -> WriteOp:
    return WriteOp(
        key=key,
        object_type=row["object_type"],
        action=row["action"],
        fields=dict(fields),
        source_id=row["source_id"],
        id_property=row["id_property"],
        id_value=row["id_value"],
        associations={k: list(v) for k, v in (row["associations"] or {}).items()},
    )


def _send(
    store: Store,
    adapter: Adapter,
    source: str,
    object_type: str,
    action: str,
    batch: list[_Op],
    *,
    now: datetime,
    max_attempts: int,
    pm: pluggy.PluginManager | None,
    rng: random.Random | None,
    report: DeliveryReport,
    on_plugin_failure: Callable[[Any], None] | None,
) -> None:
    by_key = {item.op.key: item for item in batch}
    ops = [item.op for item in batch]
    if pm is not None:
        from ..plugins import call_isolated

        call_isolated(pm, "prepare_writes", source=source, ops=ops, on_failure=on_plugin_failure)
    kept = [op for op in ops if op.key in by_key]
    held = [item for key, item in by_key.items() if key not in {op.key for op in kept}]
    results: dict[str, WriteResult] = {}
    retry_after: float | None = None
    if kept:
        report.write_calls[source] += 1
        try:
            for result in adapter.write(kept):
                results[result.key] = result
        except NotImplementedError as exc:
            results = {op.key: WriteResult(op.key, ok=False, error=str(exc), retryable=False) for op in kept}
        except Exception as exc:  # AdapterError or a bug: the whole batch is retried later
            if isinstance(exc, RateLimited):
                retry_after = exc.retry_after
            error = f"{type(exc).__name__}: {exc}"
            report.errors.append(error)
            logger.warning("outbox: write of %d ops to %s %s failed: %s", len(kept), source, object_type, error)
            results = {op.key: WriteResult(op.key, ok=False, error=error, retryable=True) for op in kept}
        for op in kept:
            results.setdefault(
                op.key,
                WriteResult(op.key, ok=False, error="adapter returned no result for this op", retryable=True),
            )
    _record(
        store,
        source,
        [by_key[op.key] for op in kept],
        results,
        held,
        now=now,
        max_attempts=max_attempts,
        rng=rng,
        retry_after=retry_after,
        report=report,
    )
    if pm is not None and kept:
        from ..plugins import call_isolated

        call_isolated(
            pm,
            "writes_completed",
            source=source,
            results=[results[op.key] for op in kept],
            on_failure=on_plugin_failure,
        )


def _record(
    store: Store,
    source: str,
    items: Sequence[_Op],
    results: Mapping[str, WriteResult],
    held: Sequence[_Op],
    *,
    now: datetime,
    max_attempts: int,
    rng: random.Random | None,
    retry_after: float | None,
    report: DeliveryReport,
) -> None:
    ob, ws = schema.outbox, schema.writeback_state
    with store.begin() as conn:
        for item in held:
            ids = [r["id"] for r in item.rows]
            conn.execute(
                update(ob)
                .where(ob.c.id.in_(ids), ob.c.status == "pending")
                .values(next_attempt_at=now + timedelta(seconds=HOLD_S), last_error="held back by prepare_writes")
            )
            report.held += len(ids)
        state_rows: list[dict[str, Any]] = []
        sent_same_id: list[int] = []
        for item in items:
            result = results[item.op.key]
            for row in item.rows:
                attempts = row["attempts"] + 1
                if result.ok:
                    result_id = result.source_id or row["source_id"]
                    if result_id == row["source_id"]:
                        sent_same_id.append(row["id"])  # the common case: one UPDATE for the whole batch
                    else:
                        conn.execute(
                            update(ob)
                            .where(ob.c.id == row["id"])
                            .values(
                                status="sent", attempts=attempts, sent_at=now, last_error=None, result_id=result_id
                            )
                        )
                    report.sent += 1
                    target_id = row["source_id"] or result.source_id
                    if row["action"] != "create" and target_id:
                        state_rows.extend(
                            {
                                "source": source,
                                "object_type": row["object_type"],
                                "source_id": target_id,
                                "field": name,
                                "value": value,
                                "written_at": now,
                                "by_us": True,
                            }
                            for name, value in (row["fields"] or {}).items()
                        )
                    continue
                dead = not result.retryable or attempts >= max_attempts
                values: dict[str, Any] = {"attempts": attempts, "last_error": (result.error or "failed")[:2000]}
                if dead:
                    values["status"] = "dead"
                    if result.retryable:
                        values["last_error"] = f"gave up after {attempts} attempts: {values['last_error']}"[:2000]
                    report.dead += 1
                else:
                    delay = backoff_delay(attempts, rng=rng)
                    if retry_after:
                        delay = max(delay, retry_after)
                    values["next_attempt_at"] = now + timedelta(seconds=delay)
                    report.retried += 1
                conn.execute(update(ob).where(ob.c.id == row["id"], ob.c.status == "pending").values(**values))
        for part in chunked(sent_same_id, 500):
            conn.execute(
                update(ob)
                .where(ob.c.id.in_(part))
                .values(
                    status="sent",
                    attempts=ob.c.attempts + 1,
                    sent_at=now,
                    last_error=None,
                    result_id=ob.c.source_id,
                )
            )
        if state_rows:
            # the newest row per field wins (rows are in id order)
            latest = {(r["source"], r["object_type"], r["source_id"], r["field"]): r for r in state_rows}
            upsert(conn, ws, list(latest.values()), key_cols=["source", "object_type", "source_id", "field"])
