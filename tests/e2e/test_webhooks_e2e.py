"""HubSpot webhooks end to end: a real uvicorn server, a Bridge over SQLite / PostgreSQL, the fake portal.

A change in HubSpot + a signed v3 webhook -> the mirror and the golden record change without a sync run;
forged, stale and replayed deliveries change nothing; deletions become tombstones; privacy deletions erase.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cxbridge_hubspot.testing import FakeHubSpot
from sqlalchemy import func, select

from cxbridge import Bridge
from cxbridge.config import config_from_dict
from cxbridge.errors import NotFound
from cxbridge.plugins import get_plugin_manager
from cxbridge.sources import build_adapter
from cxbridge.store import schema as s
from cxbridge.web import ServerThread, build_app

SECRET = "hs-app-client-secret"
TOKEN = "dashboard-token"


class Workspace:
    def __init__(self, bridge: Bridge, server: ServerThread, fake: FakeHubSpot) -> None:
        self.bridge, self.server, self.fake = bridge, server, fake
        self.url = f"{server.url}/webhooks/hubspot/hs"
        self.client = httpx.Client(base_url=server.url, timeout=10)
        self._event = 1000

    def post(self, events: list[dict[str, Any]], *, secret: str = SECRET, age: timedelta = timedelta(0),
             url: str | None = None) -> httpx.Response:
        ts = int((time.time() - age.total_seconds()) * 1000)  # the receiver runs on the wall clock
        headers, body = self.fake.webhook(events, secret=secret, uri=url or self.url, timestamp_ms=ts)
        response = self.client.post("/webhooks/hubspot/hs", content=body, headers=headers)
        receiver = self.server.server.config.app.state.hubspot_webhooks
        if receiver is not None:
            assert receiver.wait_idle(30), "webhook processing did not finish"
        return response

    def event(self, kind: str, object_id: str, **extra: Any) -> dict[str, Any]:
        self._event += 1
        return {"eventId": self._event, "subscriptionId": 7, "portalId": 62515, "occurredAt": self.fake.clock.ms(),
                "subscriptionType": f"contact.{kind}", "attemptNumber": 0, "objectId": int(object_id), **extra}

    def mirror(self, source_id: str) -> Any:
        sr = s.source_records
        with self.bridge.store.connect() as conn:
            return conn.execute(select(sr.c.fields, sr.c.deleted).where(
                sr.c.source == "hs", sr.c.object_type == "contacts", sr.c.source_id == source_id)).first()

    def count(self, table: Any, *where: Any) -> int:
        with self.bridge.store.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())

    def inbox(self, event_id: int) -> Any:
        ib = s.inbox
        with self.bridge.store.connect() as conn:
            return conn.execute(select(ib.c.status, ib.c.error).where(
                ib.c.source == "hs", ib.c.event_id == str(event_id))).first()


@pytest.fixture
def ws(store) -> Iterator[Workspace]:
    fake = FakeHubSpot()
    pm = get_plugin_manager()
    config = config_from_dict({
        "identity": {"match_on": ["email"]},
        "daemon": {"auth_token": TOKEN},
        "sources": {"hs": {"adapter": "hubspot", "connection": {
            "auth": {"type": "private_app", "token": "pat-test"}, "base_url": fake.base_url,
            "streams": ["contacts"], "archived_sweep_seconds": 0, "webhook_client_secret": SECRET}}},
    }, pm=pm, env={})
    bridge = Bridge(config, store, pm)
    # the real adapter wiring (build_adapter: state in the store, shared budgets), HTTP answered by the fake;
    # retries and pacing do not wait for real
    bridge.use_adapter("hs", build_adapter(config, "hs", pm=pm, store=store, sleep=lambda _s: None,
                                           http_defaults={"transport": fake.transport()}))
    app = build_app(pm, bridge=bridge, auth_token=TOKEN)
    with ServerThread(app) as server:
        workspace = Workspace(bridge, server, fake)
        yield workspace
        workspace.client.close()
    bridge.close()


def _initial(ws: Workspace) -> dict[str, str]:
    fake = ws.fake
    ids = {name: fake.add("contacts", {"email": f"{name}@example.com", "firstname": name.title(),
                                       "lastname": "Example"})
           for name in ("ann", "bob", "cid")}
    fake.clock.sleep(60)
    runs = ws.bridge.sync()
    assert [(r.stream, r.status) for r in runs] == [("contacts", "succeeded")]
    assert ws.bridge.customer(f"hs/{ids['ann']}").customer.first_name == "Ann"
    return ids


def test_property_change_arrives_without_a_sync(ws):
    ids = _initial(ws)
    runs_before = ws.count(s.sync_runs)
    calls_before = ws.fake.count("POST", "/crm/v3/objects/contacts/batch/read")
    ws.fake.update("contacts", ids["ann"], {"firstname": "Anna", "phone": "+49 30 1234567"})
    ev = ws.event("propertyChange", ids["ann"], propertyName="firstname", propertyValue="Anna")

    started = time.perf_counter()
    response = ws.post([ev])
    assert response.status_code == 200 and response.json() == {"accepted": 1, "duplicates": 0}
    assert time.perf_counter() - started < 5  # HubSpot's limit for the answer (and the re-read)

    assert ws.mirror(ids["ann"]).fields["firstname"] == "Anna"
    golden = ws.bridge.customer(f"hs/{ids['ann']}").customer
    assert golden.first_name == "Anna" and "+49301234567" in golden.phones
    assert ws.count(s.sync_runs) == runs_before  # no sync ran
    assert ws.fake.count("POST", "/crm/v3/objects/contacts/batch/read") == calls_before + 1  # one batch read
    assert tuple(ws.inbox(ev["eventId"])) == ("processed", None)

    # HubSpot delivers the same event again: acknowledged, ignored (even though the contact changed since)
    ws.fake.update("contacts", ids["ann"], {"firstname": "Annie"})
    assert ws.post([ev]).json() == {"accepted": 0, "duplicates": 1}
    assert ws.mirror(ids["ann"]).fields["firstname"] == "Anna"
    assert ws.fake.count("POST", "/crm/v3/objects/contacts/batch/read") == calls_before + 1


def test_forged_and_stale_deliveries_change_nothing(ws):
    ids = _initial(ws)
    ws.fake.update("contacts", ids["bob"], {"firstname": "Robert"})
    calls = len(ws.fake.calls)
    forged = ws.event("propertyChange", ids["bob"])
    assert ws.post([forged], secret="not-the-secret").status_code == 401
    wrong_uri = ws.event("propertyChange", ids["bob"])
    assert ws.post([wrong_uri], url="https://evil.example/webhooks/hubspot/hs").status_code == 401
    stale = ws.event("propertyChange", ids["bob"])
    response = ws.post([stale], age=timedelta(minutes=6))
    assert response.status_code == 401 and "5-minute" in response.json()["error"]
    assert ws.post([ws.event("propertyChange", ids["bob"])],
                   age=timedelta(minutes=4)).status_code == 200  # inside the window: accepted

    rejected = (forged, wrong_uri, stale)
    assert all(ws.inbox(e["eventId"]) is None for e in rejected)  # not even recorded
    assert len(ws.fake.calls) == calls + 1  # only the accepted one read HubSpot
    assert ws.mirror(ids["bob"]).fields["firstname"] == "Robert"
    # an unknown source is refused before anything else
    assert ws.client.post("/webhooks/hubspot/nope", content=b"[]").status_code == 404


def test_deletion_tombstones_and_privacy_deletion_erases(ws):
    ids = _initial(ws)
    bob_customer = ws.bridge.find_customer_id(f"hs/{ids['bob']}")
    cid_customer = ws.bridge.find_customer_id(f"hs/{ids['cid']}")
    ws.fake.archive("contacts", ids["bob"])
    ws.fake.objects["contacts"].pop(int(ids["cid"]))  # HubSpot carried out the GDPR deletion
    deletion = ws.event("deletion", ids["bob"])
    privacy = ws.event("privacyDeletion", ids["cid"])
    assert ws.post([deletion, privacy]).json() == {"accepted": 2, "duplicates": 0}

    assert ws.mirror(ids["bob"]).deleted is True
    with pytest.raises(NotFound):  # the record's only source is gone: no live golden record
        ws.bridge.find_customer_id(f"hs/{ids['bob']}")
    assert ws.count(s.erasure_ledger, s.erasure_ledger.c.customer_id == bob_customer) == 0  # deleted, not erased
    # the person behind the privacy deletion is gone from the store; the hashed ledger keeps them out
    with pytest.raises(NotFound):
        ws.bridge.find_customer_id(f"hs/{ids['cid']}")
    with pytest.raises(NotFound):
        ws.bridge.find_customer_id("cid@example.com")
    assert ws.mirror(ids["cid"]) is None
    assert ws.count(s.customers, s.customers.c.id == cid_customer, s.customers.c.erased.is_(False)) == 0
    assert ws.count(s.erasure_ledger, s.erasure_ledger.c.customer_id == cid_customer) >= 2
    assert [tuple(ws.inbox(e["eventId"])) for e in (deletion, privacy)] == [("processed", None)] * 2
    # the next full sync does not bring the erased person back
    ws.bridge.sync(full=True)
    with pytest.raises(NotFound):
        ws.bridge.find_customer_id("cid@example.com")


def test_failed_processing_is_recorded_and_health_and_metrics_report_it(ws):
    ids = _initial(ws)
    ws.fake.fail(503, times=50, path="/crm/v3/objects/contacts/batch/read")
    ev = ws.event("propertyChange", ids["ann"])
    assert ws.post([ev]).status_code == 200  # answered before the re-read failed
    status, error = ws.inbox(ev["eventId"])
    assert status == "failed" and "503" in error

    health = ws.client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["store"]["reachable"] is True
    assert body["streams"]["hs/contacts"]["status"] == "succeeded"
    assert body["streams"]["hs/contacts"]["records_read"] == 3
    assert body["webhook_events"] == {"failed": 1}
    assert any("webhook event" in item for item in body["attention"])

    lines = ws.client.get("/metrics").text.splitlines()
    assert 'cxbridge_sync_records_read_total{source="hs",stream="contacts"} 3' in lines
    assert 'cxbridge_sync_last_run{source="hs",status="succeeded",stream="contacts"} 1' in lines
    assert 'cxbridge_webhook_events{source="hs",status="failed"} 1' in lines
    assert 'cxbridge_customers 3' in lines and "cxbridge_store_up 1" in lines
    assert "# TYPE cxbridge_outbox_rows gauge" in lines
    assert any(line.startswith('cxbridge_http_requests_total{method="POST",route="hubspot-webhook",status="200"}')
               for line in lines)


def test_events_a_previous_process_left_unfinished_are_completed(ws):
    """A privacy deletion that failed and a change accepted by a process that died before re-reading it are
    finished after the next start, on the first authentic delivery."""
    from datetime import UTC, datetime

    from cxbridge_hubspot.webhooks import StoreInbox

    ids = _initial(ws)
    cid_customer = ws.bridge.find_customer_id(f"hs/{ids['cid']}")
    ws.fake.objects["contacts"].pop(int(ids["cid"]))
    ws.fake.update("contacts", ids["ann"], {"firstname": "Anne-Marie"})
    inbox = StoreInbox(ws.bridge.store)
    long_ago = datetime.now(UTC) - timedelta(minutes=20)
    privacy, change = ws.event("privacyDeletion", ids["cid"]), ws.event("propertyChange", ids["ann"])
    assert inbox.add("hs", str(privacy["eventId"]), privacy, long_ago)
    inbox.mark("hs", [str(privacy["eventId"])], "failed", long_ago, "StoreError: database is locked")
    assert inbox.add("hs", str(change["eventId"]), change, long_ago)  # stayed 'new': the process died
    recent = ws.event("propertyChange", ids["bob"])
    assert inbox.add("hs", str(recent["eventId"]), recent, datetime.now(UTC))  # may still be in progress

    assert ws.post([]).json() == {"accepted": 0, "duplicates": 0}  # any authentic delivery

    assert ws.mirror(ids["ann"]).fields["firstname"] == "Anne-Marie"
    with pytest.raises(NotFound):
        ws.bridge.find_customer_id("cid@example.com")
    assert ws.count(s.erasure_ledger, s.erasure_ledger.c.customer_id == cid_customer) >= 2
    assert tuple(ws.inbox(privacy["eventId"])) == ("processed", None)
    assert tuple(ws.inbox(change["eventId"])) == ("processed", None)
    assert ws.inbox(recent["eventId"]).status == "new"
    # once per start: a second delivery does not re-run the recovery
    calls = len(ws.fake.calls)
    assert ws.post([]).status_code == 200 and len(ws.fake.calls) == calls


def test_concurrent_deliveries_are_all_applied_once(ws):
    from concurrent.futures import ThreadPoolExecutor

    _initial(ws)
    new = [ws.fake.add("contacts", {"email": f"new{i}@example.com", "firstname": f"New{i}"}) for i in range(6)]
    # the same person created twice in HubSpot (same email): one golden customer
    twin = ws.fake.add("contacts", {"email": "new0@example.com", "firstname": "New0", "lastname": "Twin"})
    batches = [[ws.event("creation", cid)] for cid in [*new, twin]]
    with ThreadPoolExecutor(len(batches)) as pool:
        answers = list(pool.map(ws.post, batches))
    assert [a.status_code for a in answers] == [200] * len(batches)
    assert ws.server.server.config.app.state.hubspot_webhooks.wait_idle(30)
    for i, cid in enumerate(new):
        assert ws.bridge.customer(f"hs/{cid}").customer.first_name == f"New{i}"
    assert ws.bridge.find_customer_id(f"hs/{twin}") == ws.bridge.find_customer_id(f"hs/{new[0]}")
    assert ws.count(s.customers, s.customers.c.erased.is_(False)) == 3 + 6
    assert ws.count(s.inbox, s.inbox.c.status == "processed") == len(batches)


def test_merge_event_makes_the_merged_contact_an_alias(ws):
    ids = _initial(ws)
    keep_customer = ws.bridge.find_customer_id(f"hs/{ids['ann']}")
    bob_customer = ws.bridge.find_customer_id(f"hs/{ids['bob']}")
    ws.fake.merge("contacts", ids["ann"], ids["bob"])
    ev = ws.event("merge", ids["ann"], primaryObjectId=int(ids["ann"]), mergedObjectIds=[int(ids["bob"])],
                  newObjectId=int(ids["ann"]))
    assert ws.post([ev]).json() == {"accepted": 1, "duplicates": 0}
    assert tuple(ws.inbox(ev["eventId"])) == ("processed", None)
    sr = s.source_records
    with ws.bridge.store.connect() as conn:
        merged_into = conn.execute(select(sr.c.merged_into).where(
            sr.c.source == "hs", sr.c.source_id == ids["bob"])).scalar_one()
    assert merged_into == ids["ann"]
    # the merged person's golden id is an alias of the survivor (golden ids stay stable)
    assert ws.bridge.find_customer_id(bob_customer) == keep_customer
