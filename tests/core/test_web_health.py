"""Bridge.health() / Bridge.metrics(): real figures from the store (SQLite and PostgreSQL), the status policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import create_engine, insert

from cxbridge import Bridge
from cxbridge.config import config_from_dict
from cxbridge.store import Store
from cxbridge.store import schema as s
from cxbridge.web import ServerThread, build_app, render
from cxbridge.web.health import health_report, store_metrics

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _fill(store: Store) -> None:
    later = T0 + timedelta(hours=1)
    runs = [("r1", "shop", "customers", "succeeded", T0, 40), ("r2", "shop", "customers", "failed", later, 5),
            ("r3", "crm", "contacts", "failed", T0, 7), ("r4", "crm", "contacts", "succeeded", later, 3)]
    with store.begin() as conn:
        conn.execute(insert(s.sync_runs), [
            {"id": i, "source": src, "stream": st, "status": status, "started_at": at, "records_read": n,
             "records_changed": n // 2, "api_calls": 2} for i, src, st, status, at, n in runs])
        conn.execute(insert(s.outbox), [
            {"idempotency_key": f"k{i}", "source": "crm", "object_type": "contacts", "action": "update",
             "fields": {"x": i}, "status": status, "next_attempt_at": T0, "created_at": T0}
            for i, status in enumerate(["dead", "pending", "pending", "sent"])])
        conn.execute(insert(s.quarantine), [
            {"source": "shop", "stream": "customers", "reason": "bad email", "raw": {}, "status": status,
             "created_at": T0} for status in ("open", "open", "replayed")])
        conn.execute(insert(s.inbox), [
            {"source": "crm", "event_id": "e1", "payload": {}, "status": "failed", "received_at": T0,
             "error": "x"}])


def test_health_reports_the_newest_run_per_stream_and_what_needs_attention(store):
    _fill(store)
    report = health_report(store, ["shop", "crm"])
    assert report["status"] == "ok"  # data problems do not take the instance out of service
    assert report["store"] == {"reachable": True, "backend": store.dialect}
    assert {k: v["status"] for k, v in report["streams"].items()} == {
        "shop/customers": "failed", "crm/contacts": "succeeded"}
    assert report["quarantine_open"] == 2
    assert report["outbox"] == {"dead": 1, "pending": 2, "sent": 1}
    assert report["webhook_events"] == {"failed": 1}
    attention = "\n".join(report["attention"])
    assert "shop/customers failed" in attention and "crm/contacts" not in attention
    assert "2 quarantined" in attention and "1 write-back(s) dead" in attention and "1 webhook" in attention
    # a disabled source's failed run is not a problem
    assert not any("shop/customers" in a for a in health_report(store, ["crm"])["attention"])


def test_metrics_figures(store):
    _fill(store)
    lines = render(store_metrics(store)).splitlines()
    for expected in (
        "cxbridge_store_up 1",
        'cxbridge_sync_last_run{source="shop",status="failed",stream="customers"} 1',
        'cxbridge_sync_last_run{source="crm",status="succeeded",stream="contacts"} 1',
        'cxbridge_sync_records_read_total{source="shop",stream="customers"} 45',
        'cxbridge_sync_records_changed_total{source="crm",stream="contacts"} 4',
        'cxbridge_sync_runs_total{source="crm",stream="contacts"} 2',
        'cxbridge_sync_api_calls_total{source="shop",stream="customers"} 4',
        'cxbridge_quarantine_open{source="shop",stream="customers"} 2',
        'cxbridge_outbox_rows{source="crm",status="dead"} 1',
        'cxbridge_outbox_rows{source="crm",status="pending"} 2',
        'cxbridge_webhook_events{source="crm",status="failed"} 1',
        "cxbridge_customers 0",
    ):
        assert expected in lines, expected
    started = [ln for ln in lines if ln.startswith('cxbridge_sync_last_run_started_seconds{source="shop"')]
    assert started == [f'cxbridge_sync_last_run_started_seconds{{source="shop",stream="customers"}} '
                       f'{int((T0 + timedelta(hours=1)).timestamp())}']


def test_unreachable_store_is_degraded_and_answers_503(plugin_manager):
    down = Store(create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none",
                               connect_args={"connect_timeout": 2}))
    report = health_report(down)
    assert report["status"] == "degraded" and report["store"]["reachable"] is False
    assert "OperationalError" in report["store"]["error"]
    assert render(store_metrics(down)).splitlines()[-1] == "cxbridge_store_up 0"

    bridge = Bridge(config_from_dict({}, pm=plugin_manager, env={}), down, plugin_manager)
    with ServerThread(build_app(plugin_manager, bridge=bridge)) as server:
        response = httpx.get(f"{server.url}/health", timeout=10)
        assert response.status_code == 503 and response.json()["status"] == "degraded"
        assert "cxbridge_store_up 0" in httpx.get(f"{server.url}/metrics", timeout=10).text
