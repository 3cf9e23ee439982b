"""Erasure: forget a person in the store and the CRMs, keep only a salted hashed ledger. Both stores."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from outbox_kit import T0, FakeCRM, remote_error, seed_customer
from sqlalchemy import func, select

from cxbridge.adapters import RecordRef, WriteResult
from cxbridge.erasure import erased_source_keys, forget, is_erased, ledger_hashes
from cxbridge.errors import NotFound
from cxbridge.store import Store, schema

pytest_plugins = ["cxbridge.testing.stores"]

ANN = "ann@example.com"


def _seed_ann(store: Store, crm: FakeCRM, erp: FakeCRM | None = None) -> None:
    seed_customer(
        store,
        "cus_ann",
        "1",
        traits={"segments.tier": "gold"},
        mirror={"email": ANN},
        crm=crm,
        emails=[ANN],
        phones=["+4930123456"],
    )
    seed_customer(
        store,
        "cus_bob",
        "2",
        traits={"segments.tier": "silver"},
        mirror={"email": "bob@x.org"},
        crm=crm,
        emails=["bob@x.org"],
    )
    with store.begin() as conn:
        s = schema
        # Ann was merged with a duplicate, has a second source, interactions, history, events, writes, quarantine
        conn.execute(
            s.customer_aliases.insert(),
            {"alias_id": "cus_dup", "customer_id": "cus_ann", "reason": "identity:email", "created_at": T0},
        )
        conn.execute(
            s.source_links.insert(),
            {
                "source": "erp",
                "object_type": "debtors",
                "source_id": "D1",
                "entity": "customer",
                "customer_id": "cus_ann",
                "linked_at": T0,
            },
        )
        conn.execute(
            s.source_records.insert(),
            [
                {
                    "source": "erp",
                    "object_type": "debtors",
                    "source_id": "D1",
                    "content_hash": "h",
                    "fields": {"name": "Ann", "erp": "ERP4711"},
                    "mapped": {"full_name": "Ann", "external_ids.erp_no": "ERP4711"},
                    "first_seen": T0,
                    "last_seen": T0,
                },
                {
                    "source": "crm",
                    "object_type": "orders",
                    "source_id": "O1",
                    "content_hash": "h",
                    "fields": {"total": 10},
                    "mapped": {"amount": "10"},
                    "first_seen": T0,
                    "last_seen": T0,
                },
            ],
        )
        conn.execute(
            s.identity_keys.insert(),
            {
                "key": "xid:erp_no:ERP4711",
                "source": "erp",
                "object_type": "debtors",
                "source_id": "D1",
            },
        )
        conn.execute(
            s.interactions.insert(),
            {
                "id": "int_1",
                "customer_id": "cus_ann",
                "source": "crm",
                "object_type": "orders",
                "source_id": "O1",
                "channel": "web",
                "type": "purchase",
                "occurred_at": T0,
                "direction": "inbound",
                "data": {},
                "updated_at": T0,
            },
        )
        conn.execute(
            s.trait_history.insert(),
            {
                "customer_id": "cus_ann",
                "name": "segments.tier",
                "old_value": None,
                "new_value": "gold",
                "producer": "t",
                "changed_at": T0,
            },
        )
        conn.execute(
            s.events.insert(), {"name": "segments.entered", "customer_id": "cus_dup", "payload": {}, "at": T0}
        )
        conn.execute(
            s.outbox.insert(),
            {
                "idempotency_key": "k1",
                "source": "crm",
                "object_type": "contacts",
                "action": "update",
                "source_id": "1",
                "customer_id": "cus_ann",
                "fields": {"cx_tier": "gold"},
                "next_attempt_at": T0,
                "created_at": T0,
            },
        )
        conn.execute(
            s.writeback_state.insert(),
            {
                "source": "crm",
                "object_type": "contacts",
                "source_id": "1",
                "field": "cx_tier",
                "value": "gold",
                "written_at": T0,
            },
        )
        conn.execute(
            s.quarantine.insert(),
            {
                "source": "crm",
                "stream": "contacts",
                "source_id": "1",
                "reason": "bad phone",
                "raw": {"email": ANN},
                "created_at": T0,
            },
        )
    if erp is not None:
        erp.records[("debtors", "D1")] = {"name": "Ann"}


def _count_all(store: Store) -> dict[str, int]:
    with store.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in schema.metadata.sorted_tables
        }


def _dump(store: Store) -> str:
    with store.connect() as conn:
        return json.dumps(
            {t.name: [list(map(str, r)) for r in conn.execute(select(t))] for t in schema.metadata.sorted_tables}
        )


@pytest.mark.parametrize("identifier", [ANN, " Ann@Example.COM ", "+49 30 123456", "cus_ann", "cus_dup"])
def test_forget_removes_the_person_everywhere(store: Store, identifier: str) -> None:
    crm, erp = FakeCRM(), FakeCRM()
    _seed_ann(store, crm, erp)
    report = forget(store, {"crm": crm, "erp": erp}, identifier, now=T0 + timedelta(days=1))
    assert report.customer_id == "cus_ann" and report.merged_ids == ["cus_dup"]
    assert report.sources == {"crm": "erased", "erp": "erased"} and report.ok
    assert crm.erased == [RecordRef("contacts", "1")] and erp.erased == [RecordRef("debtors", "D1")]
    assert ("contacts", "1") not in crm.records and ("contacts", "2") in crm.records
    counts = _count_all(store)
    # only Bob remains (customer, link, mirror row, identity key, trait) plus ledger and salt
    assert counts["customers"] == 1 and counts["source_links"] == 1 and counts["source_records"] == 1
    assert counts["identity_keys"] == 1 and counts["traits"] == 1
    for table in (
        "customer_aliases",
        "interactions",
        "trait_history",
        "events",
        "outbox",
        "writeback_state",
        "quarantine",
    ):
        assert counts[table] == 0, table
    # ledger: email, phone, xid, two source records -- hashed, nothing readable left
    assert report.ledger_entries == counts["erasure_ledger"] == 5
    dump = _dump(store)
    for secret in ("ann@example.com", "+4930123456", "ERP4711", "Ann"):
        assert secret not in dump
    with store.connect() as conn:
        assert is_erased(conn, ["email:ann@example.com"])
        assert is_erased(conn, ["email:nobody@x.org", "phone:+4930123456"])
        assert is_erased(conn, ["xid:erp_no:ERP4711"])
        assert not is_erased(conn, ["email:bob@x.org"])
        assert erased_source_keys(conn, "crm", "contacts", ["1", "2", "3"]) == {"1"}
        assert erased_source_keys(conn, "erp", "debtors", ["D1"]) == {"D1"}
        assert erased_source_keys(conn, "erp", "contacts", ["D1"]) == set()
        kinds = sorted(conn.execute(select(schema.erasure_ledger.c.kind)).scalars())
    assert kinds == ["email", "phone", "source_id", "source_id", "xid"]


def test_per_source_status_and_failures(store: Store) -> None:
    class ReadOnly(FakeCRM):
        capabilities = frozenset()

    class Broken(FakeCRM):
        def erase(self, refs):
            raise remote_error()

    crm = Broken()
    _seed_ann(store, crm)
    with store.begin() as conn:
        conn.execute(
            schema.source_links.insert(),
            {
                "source": "files",
                "object_type": "rows",
                "source_id": "r1",
                "entity": "customer",
                "customer_id": "cus_ann",
                "linked_at": T0,
            },
        )
    report = forget(store, {"crm": crm, "erp": ReadOnly()}, ANN)
    assert report.sources["crm"].startswith("failed: RemoteError") and "503" in report.sources["crm"]
    assert report.sources["erp"] == "not supported by the adapter"
    assert report.sources["files"] == "source not configured"
    assert not report.ok
    assert _count_all(store)["customers"] == 1  # the store is cleaned regardless
    with store.connect() as conn:
        statuses = conn.execute(select(schema.erasure_ledger.c.sources_status)).scalars().all()
    assert all(s["files"] == "source not configured" for s in statuses)


def test_unknown_person_is_not_found(store: Store) -> None:
    _seed_ann(store, FakeCRM())
    for ident in ("nobody@example.com", "cus_nope", "+1 202 555 0100", "not-an-email@"):
        with pytest.raises(NotFound):
            forget(store, {}, ident)
    assert _count_all(store)["erasure_ledger"] == 0


def test_customer_erased_hook_and_per_workspace_salt(store_factory) -> None:
    from cxbridge import hookimpl
    from cxbridge.plugins import get_plugin_manager

    calls: list = []

    class Cache:
        @hookimpl
        def customer_erased(self, customer_id, email_hashes):
            calls.append((customer_id, list(email_hashes)))

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Cache(), name="cache")
    one, two = store_factory("sqlite"), store_factory("sqlite")
    _seed_ann(one, FakeCRM())
    forget(one, {}, ANN, pm=pm)
    with one.connect() as conn:
        h1 = ledger_hashes(conn, ["email:ann@example.com"])["email:ann@example.com"]
    with two.begin() as conn:
        h2 = ledger_hashes(conn, ["email:ann@example.com"])["email:ann@example.com"]
    assert calls == [("cus_ann", [h1])]
    assert h1 != h2  # salted per workspace


class _Flaky(FakeCRM):
    """A CRM whose erasure is down (raises) or refuses some records until told otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refuse: set[str] = set()
        self.calls: list[list[RecordRef]] = []  # type: ignore[assignment]

    def erase(self, refs):  # type: ignore[no-untyped-def]
        self.calls.append(list(refs))
        if self.down:
            raise remote_error()
        out = []
        for ref in refs:
            if ref.source_id in self.refuse:
                out.append(WriteResult(f"{ref.object_type}:{ref.source_id}", ok=False, error="423 locked"))
            else:
                out.extend(super().erase([ref]))
        return out


def _pending(store: Store) -> list[tuple[str, str, str, str, int, str]]:
    from cxbridge.erasure import pending_erasures

    with store.connect() as conn:
        return [(r.source, r.object_type, r.source_id, r.customer_id, r.attempts, r.last_error[:20])
                for r in pending_erasures(conn)]


def _ledger_status(store: Store) -> list[dict[str, str]]:
    with store.connect() as conn:
        return conn.execute(select(schema.erasure_ledger.c.sources_status)).scalars().all()


def test_crm_erasures_that_fail_are_kept_and_retried_until_confirmed(store: Store) -> None:
    """A CRM that is down or refuses a record during `forget` keeps the record's CRM id (nothing else) in
    erasure_pending; retries ask again only for those records, count attempts, and bring the ledger's per-source
    status to `erased` once the CRM confirms."""
    from cxbridge.erasure import retry_erasures
    from cxbridge.web.health import health_report, store_metrics
    from cxbridge.web.metrics import render

    crm, erp = _Flaky(), _Flaky()
    crm.down, erp.refuse = True, {"D1"}
    _seed_ann(store, crm, erp)
    report = forget(store, {"crm": crm, "erp": erp}, ANN, now=T0)
    assert report.sources["crm"].startswith("failed: RemoteError")
    assert report.sources["erp"] == "failed: debtors:D1: 423 locked" and not report.ok
    assert _pending(store) == [("crm", "contacts", "1", "cus_ann", 1, "RemoteError: source "),
                               ("erp", "debtors", "D1", "cus_ann", 1, "423 locked")]
    assert ("contacts", "1") in crm.records and ("debtors", "D1") in erp.records
    dump = _dump(store)
    for secret in ("ann@example.com", "+4930123456", "ERP4711", "Ann"):
        assert secret not in dump  # the pending rows keep CRM ids only
    health = health_report(store)
    assert health["erasures_pending"] == {"crm": 1, "erp": 1}
    assert "2 CRM erasure(s) of forgotten people pending (cxbridge erasures retry)" in health["attention"]
    metrics = render(store_metrics(store))
    assert 'cxbridge_erasures_pending{source="erp"} 1' in metrics

    # the CRM is still down, the ERP no longer refuses; a source without an adapter is not asked
    erp.refuse = set()
    retry = retry_erasures(store, {"crm": crm, "erp": erp}, now=T0 + timedelta(hours=1))
    assert retry.erased == {"crm": 0, "erp": 1} and retry.pending == {"crm": 1, "erp": 0} and not retry.ok
    assert erp.calls[-1] == [RecordRef("debtors", "D1")] and ("debtors", "D1") not in erp.records
    assert _pending(store) == [("crm", "contacts", "1", "cus_ann", 2, "RemoteError: source ")]
    assert all(s["erp"] == "erased" and s["crm"].startswith("failed: contacts:1: RemoteError") for s in
               _ledger_status(store))
    unasked = retry_erasures(store, {"erp": erp})
    assert unasked.pending == {"crm": 1} and unasked.errors == {"crm": "source not configured"}
    assert _pending(store)[0][4] == 2  # not an attempt

    crm.down = False
    retry = retry_erasures(store, {"crm": crm, "erp": erp})
    assert retry.erased == {"crm": 1} and retry.ok and crm.calls[-1] == [RecordRef("contacts", "1")]
    assert ("contacts", "1") not in crm.records and ("contacts", "2") in crm.records
    assert _pending(store) == []
    assert all(s == {"crm": "erased", "erp": "erased"} for s in _ledger_status(store))
    assert retry_erasures(store, {"crm": crm, "erp": erp}).to_json() == {
        "erased": {}, "pending": {}, "errors": {}, "ok": True}
    assert health_report(store)["erasures_pending"] == {}


def test_a_source_whose_adapter_cannot_be_built_keeps_its_records_pending(store: Store) -> None:
    from cxbridge.erasure import retry_erasures

    crm = FakeCRM()
    _seed_ann(store, crm)
    report = forget(store, {}, ANN, unavailable={"crm": "cannot build adapter: token missing"})
    assert report.sources == {"crm": "failed: cannot build adapter: token missing", "erp": "source not configured"}
    assert _pending(store) == [("crm", "contacts", "1", "cus_ann", 1, "cannot build adapter")]
    assert retry_erasures(store, {"crm": crm}).erased == {"crm": 1}
    assert crm.erased == [RecordRef("contacts", "1")] and _pending(store) == []


def test_forget_redacts_the_stored_webhook_events_that_mention_the_person(store: Store) -> None:
    """HubSpot-shaped events (Source: developers.hubspot.com/docs/api/webhooks) naming Ann by her contact id,
    her email or her phone in another format -- as a value or inside a note -- lose their payload and are not
    processed again; Bob's events, events of other sources that only share a number and look-alike addresses
    and numbers stay as they were."""
    crm = FakeCRM()
    _seed_ann(store, crm)

    def event(n: int, source: str = "crm", status: str = "processed", **fields: object) -> dict[str, object]:
        payload = {"eventId": n, "subscriptionId": 7, "portalId": 62515, "occurredAt": 1767225600000,
                   "attemptNumber": 0, "changeSource": "CRM_UI", **fields}
        return {"source": source, "event_id": str(n), "payload": payload, "status": status, "received_at": T0}

    rows = [
        event(1, subscriptionType="contact.propertyChange", objectId=1, propertyName="email",
              propertyValue="Ann@Example.com"),  # Ann by id (and email), processed
        event(2, status="failed", subscriptionType="contact.privacyDeletion", objectId=1),  # Ann, failed
        event(3, subscriptionType="contact.merge", objectId=2, primaryObjectId=2, mergedObjectIds=[1, 2],
              newObjectId=2),  # names Ann's id in a list
        event(4, subscriptionType="contact.propertyChange", objectId=99, propertyName="phone",
              propertyValue="+49 30 123456"),  # Ann's phone, another record
        event(5, subscriptionType="contact.propertyChange", objectId=2, propertyName="email",
              propertyValue="bob@x.org", portalId=1, subscriptionId=1),  # Bob; Ann's id as account ids
        event(6, source="shop", subscriptionType="contact.creation", objectId=1),  # id 1 of another source
        event(7, subscriptionType="contact.propertyChange", objectId=2, propertyName="employees",
              propertyValue="1"),  # Bob; "1" is not under an id key
        event(8, subscriptionType="contact.propertyChange", objectId=2, propertyName="notes",
              propertyValue="Call with Ann <ANN@example.com>: refund."),  # her email inside a note
        event(9, subscriptionType="contact.propertyChange", objectId=2, propertyName="notes",
              propertyValue="Callback +49 (30) 123456 2x, then mail"),  # her phone inside a note
        event(10, subscriptionType="contact.propertyChange", objectId=2, propertyName="notes",
              propertyValue="cc xann@example.com, ann@example.com.au, +49 30 1234567"),  # look-alikes only
    ]
    with store.begin() as conn:
        conn.execute(schema.inbox.insert(), rows)
    report = forget(store, {"crm": crm}, ANN)
    assert report.deleted["inbox"] == 6
    with store.connect() as conn:
        stored = {r.event_id: r for r in conn.execute(select(schema.inbox))}
    for n in ("1", "2", "3", "4", "8", "9"):
        assert stored[n].payload == {"redacted": "cxbridge forget"} and stored[n].status == "erased", n
    for n in ("5", "6", "7", "10"):
        assert stored[n].payload == next(r["payload"] for r in rows if r["event_id"] == n), n
    assert stored["5"].status == "processed"
    dump = _dump(store)
    # only event 10's look-alikes are left
    assert not re.search(r"(?<!x)ann@example\.com(?!\.au)", dump.lower())
    assert not re.search(r"30\)? 123456(?!7)", dump)
