"""End to end through cxbridge.sync into a real store: faults mid-run lose nothing and double nothing."""

from __future__ import annotations

from typing import Any

import pytest
from cxbridge_salesforce import plugin as salesforce_plugin
from cxbridge_salesforce.adapter import SalesforceAdapter
from sqlalchemy import func, select

from cxbridge.config import config_from_dict
from cxbridge.plugins import get_plugin_manager
from cxbridge.store import schema as s
from cxbridge.sync import SyncEngine
from cxbridge.testing.contract import make_test_context


@pytest.fixture
def engine_for(fake, store):
    # only the core defaults and this adapter: other installed plugins (segments...) are not under test here
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(salesforce_plugin, name="salesforce")

    def build(**connection: Any) -> tuple[SyncEngine, SalesforceAdapter]:
        doc = {
            "sources": {"sfdc": {"adapter": "salesforce", "connection": {
                "auth": {"flow": "refresh_token", "client_id": fake.client_id,
                         "refresh_token": fake.refresh_token},
                "login_url": fake.login_url, "objects": ["Contact", "Task"], **connection}}},
            "identity": {"match_on": ["email"]},
        }
        cfg = config_from_dict(doc, pm=pm)
        context = make_test_context("sfdc", now=lambda: fake.now)
        adapter = SalesforceAdapter(cfg.sources["sfdc"].connection, context)
        return SyncEngine(store, cfg, pm, {"sfdc": adapter}, now=lambda: fake.now), adapter

    return build


def _mirror(store) -> dict[str, dict]:
    sr = s.source_records
    with store.connect() as conn:
        rows = conn.execute(select(sr.c.source_id, sr.c.fields, sr.c.deleted, sr.c.merged_into)
                            .where(sr.c.object_type == "Contact")).all()
    return {r.source_id: {"fields": r.fields, "deleted": r.deleted, "merged_into": r.merged_into} for r in rows}


def test_faults_mid_run_lose_nothing_and_double_nothing(fake, engine_for, store):
    # Salesforce may return fewer than 2,000 rows per batch ("the returned batch can include fewer records than
    # the limit", QueryAll docs); 200-row batches (the smallest batchSize) keep this test fast.
    fake.page_size = 200
    contacts = [fake.insert("Contact", LastName=f"L{i}", Email=f"p{i}@example.com") for i in range(800)]
    fake.insert("Task", WhoId=contacts[0], Subject="Welcome call", TaskSubtype="Call")
    fake.tick(30)
    fake.daily_limit = 1000
    more_pages = {"n": 0}

    def chaos(method: str, path: str) -> None:
        if not path.startswith("query/01g"):
            return
        more_pages["n"] += 1
        if more_pages["n"] == 1:  # while paging: a session expiry, a 5xx burst and edits
            fake.expire_sessions()
            fake.fail_next(503, "connection")
            fake.tick(2)
            fake.update("Contact", contacts[10], LastName="edited while paging")
            fake.update("Contact", contacts[780], LastName="edited ahead of the cursor")
        if more_pages["n"] == 2:  # the daily allowance reaches the 80 % line
            fake.api_used = int(fake.daily_limit * 0.8)

    fake.before_request = chaos
    engine, _ = engine_for()
    (run, *_rest) = engine.run(["sfdc"])
    assert run.status == "stopped" and "80%" in (run.error or "")
    assert 0 < run.records_read < 800
    fake.before_request = None
    fake.api_used = 0  # a new day
    fake.tick(600)
    engine, _ = engine_for()
    runs = engine.run(["sfdc"])
    assert [r.status for r in runs] == ["succeeded", "succeeded"]

    mirror = _mirror(store)
    assert set(mirror) == set(contacts), "every contact exactly once in the store"
    assert mirror[contacts[10]]["fields"]["LastName"] == "edited while paging"
    assert mirror[contacts[780]]["fields"]["LastName"] == "edited ahead of the cursor"
    assert fake.logins >= 2

    fake.tick(60)
    fake.merge("Contact", contacts[1], contacts[2])
    fake.delete("Contact", contacts[3])
    fake.tick(600)
    engine, _ = engine_for()
    engine.run(["sfdc"])
    mirror = _mirror(store)
    assert mirror[contacts[2]]["deleted"] and mirror[contacts[2]]["merged_into"] == contacts[1]
    assert mirror[contacts[3]]["deleted"] and not mirror[contacts[1]]["deleted"]
    with store.connect() as conn:
        total = conn.execute(select(func.count()).select_from(s.source_records)).scalar_one()
    assert total == 801  # 800 contacts + 1 task, no duplicates


def test_bulk_initial_load_through_the_engine_resumes_after_a_crash(fake, engine_for, store):
    contacts = [fake.insert("Contact", LastName=f"L{i}") for i in range(600)]
    fake.tick(30)
    fake.bulk_chunk = 200

    class Crash(Exception):
        pass

    calls = {"n": 0}

    def crash_on_second_results(method: str, path: str) -> None:
        if path.endswith("/results"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise Crash("kill -9")

    fake.before_request = crash_on_second_results
    engine, _ = engine_for(bulk_threshold=100, page_size=100)
    runs = engine.run(["sfdc"])
    assert runs[0].status == "failed"
    assert 0 < len(_mirror(store)) < 600
    fake.before_request = None
    engine, _ = engine_for(bulk_threshold=100, page_size=100)
    runs = engine.run(["sfdc"])
    assert runs[0].status == "succeeded"
    assert set(_mirror(store)) == set(contacts)
    assert fake.calls("POST jobs/query") == 1, "the job is resumed, not created again"
