"""Webhook receiver: v3 signature, 5-minute window, duplicate event ids, targeted batch re-reads."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import pytest
from cxbridge_hubspot import plugin
from cxbridge_hubspot.testing import sign_v3
from cxbridge_hubspot.webhooks import MemoryInbox, StoreInbox, WebhookReceiver, plan_events, verify_signature

from cxbridge.web import ServerThread, build_app

SECRET = "app-secret"
PATH = "/webhooks/hubspot/hs"
URL = f"https://cxbridge.example.com{PATH}"  # a configured webhook_url (the app behind a proxy)


@pytest.fixture
def wired(fake, make_adapter, plugin_manager, register_plugin):
    """The real web app with the plugin's route, a receiver re-reading through the adapter."""
    register_plugin(plugin, name="hubspot")
    adapter = make_adapter()
    ingested: list = []
    erased: list = []

    def dispatch(source, plan):
        for stream, ids in plan.reread.items():
            for page in adapter.read_ids(stream, ids):
                ingested.extend(page.records)
        erased.extend(plan.erase)

    inbox = MemoryInbox()
    receiver = WebhookReceiver(secret_for=lambda s: SECRET if s == "hs" else None, inbox=inbox,
                               dispatch=dispatch, now=fake.clock.now)
    app = build_app(plugin_manager)
    app.state.hubspot_webhooks = receiver
    with ServerThread(app) as server, _client(server, app) as client:
        yield client, receiver, inbox, ingested, erased


def _client(server, app) -> httpx.Client:
    """A client of the real server that waits after each answer until the receiver has processed what it
    accepted (HubSpot gets its 200 first; the re-reads run afterwards in the server's thread pool)."""

    def settle(response: httpx.Response) -> None:
        receiver = app.state.hubspot_webhooks
        if receiver is not None:
            assert receiver.wait_idle(10), "webhook processing did not finish"

    return httpx.Client(base_url=server.url, event_hooks={"response": [settle]})


def _post(client, fake, events, *, secret=SECRET, ts=None, tamper=False, uri=None):
    """POST ``events`` to the real server, signed as HubSpot signs them: for the URL it called, or ``uri``
    (the source's configured ``webhook_url``)."""
    uri = uri or str(client.base_url.join(PATH))
    headers, body = fake.webhook(events, secret=secret, uri=uri, timestamp_ms=ts)
    if tamper:
        body = body.replace(b"propertyChange", b"creation")
    return client.post(PATH, content=body, headers=headers)


def test_signature_v3_matches_documented_algorithm():
    body = b'[{"eventId":1}]'
    sig = sign_v3(SECRET, "POST", URL, body, "1700000000000")
    assert verify_signature(secret=SECRET, method="POST", uri=URL, body=body, timestamp="1700000000000",
                            signature=sig, now_ms=1_700_000_100_000) is None
    assert verify_signature(secret=SECRET, method="POST", uri=URL, body=body + b" ", timestamp="1700000000000",
                            signature=sig, now_ms=1_700_000_100_000) == "signature mismatch"
    assert "5-minute" in verify_signature(secret=SECRET, method="POST", uri=URL, body=body,
                                          timestamp="1700000000000", signature=sig, now_ms=1_700_000_400_001)


def test_signed_uri_decodes_the_documented_escapes():
    from cxbridge_hubspot.webhooks import signed_uri

    raw = "https://example.com/hook?x=a%3Ab%2Cc%20d"
    assert signed_uri(raw) == "https://example.com/hook?x=a:b,c%20d"
    body, ts = b"[]", "1700000000000"
    sig = sign_v3(SECRET, "POST", signed_uri(raw), body, ts)
    assert verify_signature(secret=SECRET, method="POST", uri=raw, body=body, timestamp=ts, signature=sig,
                            now_ms=1_700_000_000_000) is None


def test_property_change_triggers_targeted_reread(fake, wired):
    client, _, inbox, ingested, _ = wired
    c = fake.add("contacts", {"email": "ann@example.com", "firstname": "Ann"})
    fake.update("contacts", c, {"firstname": "Anna"})
    events = [{"eventId": 11, "subscriptionType": "contact.propertyChange", "objectId": int(c),
               "propertyName": "firstname", "propertyValue": "Anna", "occurredAt": fake.clock.ms()}]
    resp = _post(client, fake, events)
    assert resp.status_code == 200 and resp.json() == {"accepted": 1, "duplicates": 0}
    assert [(r.source_id, r.fields["firstname"]) for r in ingested] == [(c, "Anna")]
    assert fake.count("POST", "/crm/v3/objects/contacts/batch/read") == 1
    assert inbox.events[("hs", "11")]["status"] == "processed"
    # HubSpot retries the delivery: the duplicate is acknowledged and ignored
    resp = _post(client, fake, events)
    assert resp.json() == {"accepted": 0, "duplicates": 1}
    assert fake.count("POST", "/crm/v3/objects/contacts/batch/read") == 1 and len(ingested) == 1


def test_bad_signature_and_stale_timestamp_are_rejected(fake, wired):
    client, receiver, _, ingested, _ = wired
    events = [{"eventId": 12, "subscriptionType": "contact.propertyChange", "objectId": 1}]
    assert _post(client, fake, events, secret="wrong").status_code == 401
    assert _post(client, fake, events, tamper=True).status_code == 401
    stale = fake.clock.ms() - int(timedelta(minutes=6).total_seconds() * 1000)
    assert _post(client, fake, events, ts=stale).status_code == 401
    assert receiver.rejected == 3 and not ingested and fake.calls == []
    assert client.post("/webhooks/hubspot/other", content=b"[]").status_code == 404


def test_deletion_merge_and_privacy_deletion(fake, wired):
    client, _, _, ingested, erased = wired
    keep = fake.add("contacts", {"email": "keep@example.com"})
    dup = fake.add("contacts", {"email": "dup@example.com"})
    gone = fake.add("contacts", {"email": "gone@example.com"})
    fake.merge("contacts", keep, dup)
    fake.archive("contacts", gone)
    events = [
        {"eventId": 21, "subscriptionType": "contact.merge", "objectId": int(keep), "primaryObjectId": int(keep),
         "mergedObjectIds": [int(dup)], "newObjectId": int(keep)},
        {"eventId": 22, "subscriptionType": "object.deletion", "objectTypeId": "0-1", "objectId": int(gone)},
        {"eventId": 23, "subscriptionType": "contact.privacyDeletion", "objectId": 999999},
    ]
    assert _post(client, fake, events).status_code == 200
    by_id = {r.source_id: r for r in ingested}
    assert by_id[dup].merged_into == keep
    assert by_id[gone].deleted and by_id["999999"].deleted
    assert not by_id[keep].deleted
    assert erased == ["999999"]
    assert fake.count("POST", "/crm/v3/objects/contacts/batch/read") == 1  # one batch for all ids


def test_plan_ignores_unknown_types_and_streams():
    plan = plan_events([{"eventId": 1, "subscriptionType": "conversation.creation", "objectId": 5},
                        {"eventId": 2, "subscriptionType": "deal.creation", "objectId": 6}], streams=["contacts"])
    assert plan.reread == {} and plan.event_ids == ["1", "2"]


def test_store_inbox_persists_seen_ids(store, fake):
    sqlite_store = store  # SQLite and PostgreSQL
    inbox = StoreInbox(sqlite_store)
    now = fake.clock.now()
    assert inbox.add("hs", "e1", {"eventId": "e1"}, now) is True
    assert inbox.add("hs", "e1", {"eventId": "e1"}, now) is False
    assert inbox.add("other", "e1", {"eventId": "e1"}, now) is True
    inbox.mark("hs", ["e1"], "processed", now)
    from sqlalchemy import select

    from cxbridge.store import schema

    with sqlite_store.begin() as conn:
        rows = conn.execute(select(schema.inbox.c.source, schema.inbox.c.status)).all()
    assert sorted(tuple(r) for r in rows) == [("hs", "processed"), ("other", "new")]
    json.dumps([dict(r._mapping) for r in rows])


def test_bridge_receiver_queues_rereads_for_the_next_run(fake, sqlite_store, plugin_manager, register_plugin):
    """Without Bridge.ingest_pages the ids wait in the source state; the next run re-reads them first."""
    from types import SimpleNamespace

    from cxbridge_hubspot import HubSpotAdapter
    from cxbridge_hubspot.testing import make_context

    from cxbridge.adapters import Cursor
    from cxbridge.config import config_from_dict
    from cxbridge.store.state import SourceState

    register_plugin(plugin, name="hubspot")
    cfg = config_from_dict({"sources": {"hs": {"adapter": "hubspot", "connection": {
        "auth": {"type": "private_app", "token": "pat-test"}, "webhook_client_secret": SECRET,
        "webhook_url": URL, "streams": ["contacts"]}}}}, pm=plugin_manager, env={})
    state = SourceState(sqlite_store, "hs")
    adapter = HubSpotAdapter(cfg.sources["hs"].connection, make_context(fake, source="hs", state=state))
    forgotten: list = []
    bridge = SimpleNamespace(config=cfg, store=sqlite_store, adapter=lambda s: adapter,
                             find_customer_id=lambda ref: "cust-1" if ref == "hs/77" else None,
                             forget=forgotten.append)
    app = build_app(plugin_manager)
    app.state.bridge = bridge
    app.state.hubspot_webhooks = None
    with ServerThread(app) as server, _client(server, app) as client:
        c = fake.add("contacts", {"email": "q@example.com", "firstname": "Q"})
        fake.clock.sleep(5)
        cursor = Cursor(modstamp=fake.clock.now(), state={"phase": "search", "mode": "range"})
        fake.search_index_lag = 3600.0  # the search index has not caught up: only a targeted read sees it
        fake.update("contacts", c, {"firstname": "Quinn"})
        events = [{"eventId": 31, "subscriptionType": "contact.propertyChange", "objectId": int(c)},
                  {"eventId": 32, "subscriptionType": "contact.privacyDeletion", "objectId": 77}]
        now_ms = int(time.time() * 1000)  # the bridge's receiver runs on the wall clock
        assert _post(client, fake, events, ts=now_ms, uri=URL).status_code == 200
        assert forgotten == ["cust-1"]
        assert state.get("webhook.pending.contacts") == [c, "77"]

        records = [r for page in adapter.read("contacts", cursor) for r in page.records]
        by_id = {r.source_id: r for r in records}
        assert by_id[c].fields["firstname"] == "Quinn" and by_id["77"].deleted
        assert state.get("webhook.pending.contacts") is None
        again = _post(client, fake, events, ts=now_ms, uri=URL)
        assert again.json() == {"accepted": 0, "duplicates": 2}  # the store's inbox


def test_finished_events_are_deleted_after_the_retention_window(fake, wired):
    """Processed events stay while HubSpot may redeliver them (24 h), go after RETENTION (7 days); failed ones
    stay until they are processed. Deleting runs at most every PRUNE_EVERY per source."""
    from cxbridge_hubspot.webhooks import PRUNE_EVERY, RETENTION

    client, receiver, inbox, _, _ = wired
    c = fake.add("contacts", {"email": "ann@example.com", "firstname": "Ann"})

    def change(n: int) -> list[dict]:
        return [{"eventId": n, "subscriptionType": "contact.propertyChange", "objectId": int(c),
                 "propertyName": "firstname", "propertyValue": "Ann", "occurredAt": fake.clock.ms()}]

    assert _post(client, fake, change(1)).json()["accepted"] == 1
    inbox.add("hs", "2", change(2)[0], fake.clock.now())
    inbox.mark("hs", ["2"], "failed", fake.clock.now(), "RemoteError")
    fake.clock.sleep(timedelta(hours=25).total_seconds())
    assert _post(client, fake, change(1)).json() == {"accepted": 0, "duplicates": 1}  # a late redelivery
    assert _post(client, fake, change(3)).json()["accepted"] == 1
    assert set(inbox.events) >= {("hs", "1"), ("hs", "3")} and receiver.pruned == 0
    fake.clock.sleep((RETENTION - timedelta(hours=25) + PRUNE_EVERY).total_seconds())
    assert _post(client, fake, change(4)).json()["accepted"] == 1
    assert ("hs", "1") not in inbox.events and receiver.pruned == 1  # finished 7 days + 1 h ago
    assert {("hs", "2"), ("hs", "3"), ("hs", "4")} <= set(inbox.events)  # failed; and within the window
    assert inbox.events[("hs", "2")]["status"] == "failed"


def test_store_inbox_deletes_only_finished_events_before_the_cutoff(store, fake):
    from sqlalchemy import select

    from cxbridge.store import schema

    inbox = StoreInbox(store)
    old, new = fake.clock.now() - timedelta(days=8), fake.clock.now()
    for n, status, at in (("1", "processed", old), ("2", "erased", old), ("3", "failed", old),
                          ("4", "processed", new), ("5", "new", old)):
        assert inbox.add("hs", n, {"eventId": n}, old)
        if status != "new":
            inbox.mark("hs", [n], status, at)
    assert inbox.add("other", "1", {"eventId": "1"}, old)
    inbox.mark("other", ["1"], "processed", old)
    assert inbox.prune("hs", new - timedelta(days=7)) == 2
    with store.connect() as conn:
        left = sorted(tuple(r) for r in conn.execute(select(schema.inbox.c.source, schema.inbox.c.event_id)))
    assert left == [("hs", "3"), ("hs", "4"), ("hs", "5"), ("other", "1")]
