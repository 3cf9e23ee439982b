"""What ``/health`` and ``/metrics`` report about a workspace: store, sync runs, quarantine, outbox, webhooks.

:func:`health_report` backs :meth:`cxbridge.Bridge.health` and :func:`store_metrics` backs
:meth:`cxbridge.Bridge.metrics`; both read the store only (a few grouped queries, no scan of customer data).

Health policy: the status is ``degraded`` (``/health`` answers 503) only when the process cannot do its job
-- the store is unreachable. Problems of the data or of a CRM (the last run of a stream failed, dead-lettered
write-backs, open quarantine, failed webhook events, CRM erasures not confirmed yet) are listed under
``attention`` with status ``ok``: a restart would not fix them, and a load balancer that took the instance out
of service would also stop the webhook intake. Alert on them through ``/metrics``
(``cxbridge_sync_last_run{status="failed"}``, ``cxbridge_outbox_rows{status="dead"}``,
``cxbridge_erasures_pending``...).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .metrics import MetricFamily

__all__ = ["health_report", "store_metrics"]

logger = logging.getLogger(__name__)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _last_runs(conn: Any) -> list[Any]:
    """The newest ``sync_runs`` row of every (source, stream)."""
    from sqlalchemy import and_, func, select

    from ..store import schema as s

    r = s.sync_runs
    newest = (
        select(r.c.source, r.c.stream, func.max(r.c.started_at).label("started_at"))
        .group_by(r.c.source, r.c.stream)
        .subquery()
    )
    rows = conn.execute(
        select(r)
        .join(newest, and_(r.c.source == newest.c.source, r.c.stream == newest.c.stream,
                           r.c.started_at == newest.c.started_at))
        .order_by(r.c.source, r.c.stream, r.c.id)
    ).all()
    last: dict[tuple[str, str], Any] = {}
    for row in rows:  # two runs started in the same instant: keep one
        last[(row.source, row.stream)] = row
    return list(last.values())


def _grouped(conn: Any, table: Any, *cols: str, where: Any = None) -> dict[tuple[str, ...], int]:
    from sqlalchemy import func, select

    columns = [table.c[c] for c in cols]
    query = select(*columns, func.count().label("n")).group_by(*columns)
    if where is not None:
        query = query.where(where)
    return {tuple(str(v) for v in row[:-1]): int(row[-1]) for row in conn.execute(query)}


def health_report(store: Any, enabled_sources: Iterable[str] = ()) -> dict[str, Any]:
    """The ``/health`` mapping of a workspace (see the module docs for the status policy)."""
    from sqlalchemy import text

    from ..store import schema as s

    report: dict[str, Any] = {"status": "ok", "store": {"reachable": True, "backend": store.dialect}}
    try:
        with store.connect() as conn:
            conn.execute(text("SELECT 1"))
            runs = _last_runs(conn)
            quarantine = _grouped(conn, s.quarantine, "source", where=s.quarantine.c.status == "open")
            outbox = _grouped(conn, s.outbox, "status")
            inbox = _grouped(conn, s.inbox, "status")
            erasures = _grouped(conn, s.erasure_pending, "source")
    except Exception as exc:  # the store is down: say so, do not raise (health must answer)
        logger.warning("health: store unreachable: %s", exc)
        report["status"] = "degraded"
        report["store"] = {"reachable": False, "backend": store.dialect, "error": f"{type(exc).__name__}: {exc}"}
        return report
    attention: list[str] = []
    streams: dict[str, Any] = {}
    enabled = set(enabled_sources)
    for run in runs:
        key = f"{run.source}/{run.stream}"
        streams[key] = {"status": run.status, "started_at": _iso(run.started_at),
                        "finished_at": _iso(run.finished_at), "records_read": run.records_read,
                        "error": run.error}
        if run.status == "failed" and (not enabled or run.source in enabled):
            attention.append(f"last run of {key} failed: {run.error}")
    open_q = sum(quarantine.values())
    dead = outbox.get(("dead",), 0)
    failed_events = inbox.get(("failed",), 0)
    if open_q:
        attention.append(f"{open_q} quarantined record(s) open (cxbridge quarantine list)")
    if dead:
        attention.append(f"{dead} write-back(s) dead-lettered (cxbridge outbox dead)")
    if failed_events:
        attention.append(f"{failed_events} webhook event(s) failed (the next poll re-reads them)")
    pending_erasures = sum(erasures.values())
    if pending_erasures:
        attention.append(
            f"{pending_erasures} CRM erasure(s) of forgotten people pending (cxbridge erasures retry)")
    report.update(
        streams=streams,
        quarantine_open=open_q,
        outbox={status: n for (status,), n in sorted(outbox.items())},
        webhook_events={status: n for (status,), n in sorted(inbox.items())},
        erasures_pending={source: n for (source,), n in sorted(erasures.items())},
        attention=attention,
    )
    return report


def store_metrics(store: Any) -> list[MetricFamily]:
    """Metric families read from the store: sync runs and records, quarantine, outbox, webhook inbox."""
    from sqlalchemy import func, select

    from ..store import schema as s

    up = MetricFamily("cxbridge_store_up", "gauge", "Whether the store answered the last scrape.")
    try:
        with store.connect() as conn:
            runs = _last_runs(conn)
            r = s.sync_runs
            totals = conn.execute(
                select(r.c.source, r.c.stream, func.count().label("runs"),
                       func.coalesce(func.sum(r.c.records_read), 0).label("read"),
                       func.coalesce(func.sum(r.c.records_changed), 0).label("changed"),
                       func.coalesce(func.sum(r.c.records_quarantined), 0).label("quarantined"),
                       func.coalesce(func.sum(r.c.api_calls), 0).label("api_calls"))
                .group_by(r.c.source, r.c.stream)
            ).all()
            quarantine = _grouped(conn, s.quarantine, "source", "stream", where=s.quarantine.c.status == "open")
            outbox = _grouped(conn, s.outbox, "source", "status")
            inbox = _grouped(conn, s.inbox, "source", "status")
            erasures = _grouped(conn, s.erasure_pending, "source")
            customers = conn.execute(
                select(func.count()).select_from(s.customers).where(s.customers.c.erased.is_(False))
            ).scalar_one()
    except Exception as exc:
        logger.warning("metrics: store unreachable: %s", exc)
        return [up.add(0)]
    families = [up.add(1), MetricFamily("cxbridge_customers", "gauge", "Live golden customers.").add(customers)]
    last = MetricFamily("cxbridge_sync_last_run", "gauge",
                        "1 for the status of the newest run of each stream.")
    last_ts = MetricFamily("cxbridge_sync_last_run_started_seconds", "gauge",
                           "Start of the newest run of each stream (Unix time).")
    for run in runs:
        labels = {"source": run.source, "stream": run.stream}
        last.add(1, {**labels, "status": run.status})
        last_ts.add(run.started_at.timestamp(), labels)
    read = MetricFamily("cxbridge_sync_records_read_total", "counter", "Records read by sync runs.")
    changed = MetricFamily("cxbridge_sync_records_changed_total", "counter", "Records that changed the store.")
    quarantined = MetricFamily("cxbridge_sync_records_quarantined_total", "counter", "Records quarantined.")
    calls = MetricFamily("cxbridge_sync_api_calls_total", "counter", "API calls made by sync runs.")
    n_runs = MetricFamily("cxbridge_sync_runs_total", "counter", "Sync runs started.")
    for row in totals:
        labels = {"source": row.source, "stream": row.stream}
        read.add(row.read, labels)
        changed.add(row.changed, labels)
        quarantined.add(row.quarantined, labels)
        calls.add(row.api_calls, labels)
        n_runs.add(row.runs, labels)
    q = MetricFamily("cxbridge_quarantine_open", "gauge", "Open quarantined records.")
    for (source, stream), n in quarantine.items():
        q.add(n, {"source": source, "stream": stream})
    ob = MetricFamily("cxbridge_outbox_rows", "gauge", "Outbox rows by source and status.")
    for (source, status), n in outbox.items():
        ob.add(n, {"source": source, "status": status})
    ib = MetricFamily("cxbridge_webhook_events", "gauge", "Webhook events in the inbox by source and status.")
    for (source, status), n in inbox.items():
        ib.add(n, {"source": source, "status": status})
    er = MetricFamily("cxbridge_erasures_pending", "gauge",
                      "CRM records of forgotten people their CRM has not confirmed erasing, by source.")
    for (source,), n in erasures.items():
        er.add(n, {"source": source})
    return [*families, last, last_ts, read, changed, quarantined, calls, n_runs, q, ob, ib, er]
