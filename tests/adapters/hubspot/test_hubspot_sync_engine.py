"""End to end through cxbridge.sync into real stores (SQLite and PostgreSQL): faults lose and double nothing."""

from __future__ import annotations

from typing import Any

import pytest
from cxbridge_hubspot import HubSpotAdapter
from cxbridge_hubspot.testing import DictState, make_context
from sqlalchemy import func, select

from cxbridge.config import config_from_dict
from cxbridge.plugins import get_plugin_manager
from cxbridge.store import schema as s
from cxbridge.sync import SyncEngine

OAUTH = {"type": "oauth", "client_id": "client-1", "client_secret": "secret-1", "refresh_token": "rt-0"}


@pytest.fixture
def engine_for(fake, store):
    pm = get_plugin_manager()
    state = DictState()  # survives "restarts" like the store's source state would

    def build(**connection: Any) -> SyncEngine:
        doc = {"sources": {"hs": {"adapter": "hubspot", "connection": {
            "auth": OAUTH, "base_url": fake.base_url, "streams": ["contacts", "notes"],
            "archived_sweep_seconds": 0, "list_page_size": 50, **connection}}},
            "identity": {"match_on": ["email"]}}
        cfg = config_from_dict(doc, pm=pm)
        adapter = HubSpotAdapter(cfg.sources["hs"].connection, make_context(fake, source="hs", state=state))
        return SyncEngine(store, cfg, pm, {"hs": adapter}, now=fake.clock.now)

    return build


def _mirror(store, object_type: str) -> dict[str, dict]:
    sr = s.source_records
    with store.connect() as conn:
        rows = conn.execute(select(sr.c.source_id, sr.c.fields, sr.c.deleted, sr.c.merged_into)
                            .where(sr.c.object_type == object_type, sr.c.source == "hs")).all()
        total = conn.execute(select(func.count()).select_from(sr).where(sr.c.object_type == object_type)).scalar()
    assert total == len(rows)
    return {r.source_id: {"fields": r.fields, "deleted": r.deleted, "merged_into": r.merged_into} for r in rows}


def test_faults_mid_run_lose_nothing_and_double_nothing(fake, engine_for, store):
    contacts = [fake.add("contacts", {"email": f"p{i}@example.com", "firstname": f"P{i}"}) for i in range(420)]
    note = fake.add("notes", {"hs_note_body": "hello"}, associations={"contacts": [contacts[0]]})
    fake.clock.sleep(30)
    lists = {"n": 0}

    def chaos(request) -> None:
        if request.url.path != "/crm/v3/objects/contacts" or request.url.params.get("archived") == "true":
            return
        lists["n"] += 1
        if lists["n"] == 2:  # while paging: the token expires, a 5xx burst, a dropped connection, edits
            for token in fake.access_tokens:
                fake.access_tokens[token] = 0
            fake.fail(503, times=2)
            fake.fail("connect", times=1)
            fake.clock.sleep(2)
            fake.update("contacts", contacts[10], {"firstname": "edited behind"})
            fake.update("contacts", contacts[400], {"firstname": "edited ahead"})
        if lists["n"] == 5:
            fake.fail("429:DAILY", times=1)  # the daily limit: stop cleanly, resume tomorrow

    fake.hooks.append(chaos)
    engine = engine_for()
    run = engine.run(["hs"])[0]
    assert run.status == "stopped" and "daily" in (run.error or "").lower()
    assert 0 < run.records_read < 420
    fake.hooks.clear()
    fake.clock.sleep(3600 + 600)  # the source pauses an hour after the daily limit
    fake.update("contacts", contacts[20], {"firstname": "edited between runs"})
    fake.clock.sleep(1)
    runs = engine_for().run(["hs"])
    assert [r.status for r in runs] == ["succeeded", "succeeded"]

    fake.clock.sleep(60)
    fake.archive("contacts", contacts[5])
    fake.merge("contacts", contacts[7], contacts[8])
    fake.update("contacts", contacts[30], {"firstname": "late edit"})
    fake.clock.sleep(10)
    runs = engine_for().run(["hs"])
    assert [r.status for r in runs] == ["succeeded", "succeeded"]

    mirror = _mirror(store, "contacts")
    assert set(mirror) == set(contacts)
    live = {cid: fake.get("contacts", cid) for cid in contacts}
    for cid, row in mirror.items():
        if cid == contacts[5]:
            assert row["deleted"]
        elif cid == contacts[8]:
            assert row["merged_into"] == contacts[7]
        else:
            assert not row["deleted"], cid
            assert row["fields"]["firstname"] == live[cid]["firstname"], cid
    notes = _mirror(store, "notes")
    assert list(notes) == [note] and notes[note]["fields"]["_cx"]["contact_id"] == contacts[0]
    assert fake.responses.count(401) == 1  # refreshed once on EXPIRED_AUTHENTICATION
