"""Traits and closed-loop actions through the real outbox into the fake HubSpot, and back without ping-pong."""

from __future__ import annotations

from datetime import timedelta

from cxbridge_hubspot import HubSpotAdapter, plugin
from cxbridge_hubspot.testing import make_context
from sqlalchemy import select

from cxbridge import hookimpl
from cxbridge.config import config_from_dict
from cxbridge.hooktypes import Action, TraitInfo
from cxbridge.outbox import deliver
from cxbridge.plugins import get_plugin_manager
from cxbridge.store import schema as s
from cxbridge.sync import StoreContext, SyncEngine


class AcmeTraits:
    """A test plugin declaring the trait the write-back rule uses."""

    @hookimpl
    def register_traits(self):
        return [TraitInfo(name="acme.tier", type="string", description="test tier")]


def test_writeback_and_task_round_trip(fake, sqlite_store, register_plugin):
    fake.add_property("contacts", "cx_tier")
    ids = [fake.add("contacts", {"email": f"w{i}@example.com", "firstname": f"W{i}"}) for i in range(3)]
    fake.clock.sleep(5)
    pm = get_plugin_manager(load_entrypoints=False)  # no installed plugin computes traits of its own
    register_plugin(plugin, name="hubspot", pm=pm)
    register_plugin(AcmeTraits(), name="acme", pm=pm)
    cfg = config_from_dict({
        "sources": {"hs": {"adapter": "hubspot", "connection": {
            "auth": {"type": "private_app", "token": "pat-test"}, "base_url": fake.base_url,
            "streams": ["contacts", "tasks"]}}},
        "identity": {"match_on": ["email"]},
        "writeback": [{"trait": "acme.tier", "source": "hs", "object_type": "contacts", "field": "cx_tier"}],
    }, pm=pm)
    adapter = HubSpotAdapter(cfg.sources["hs"].connection, make_context(fake, source="hs"))
    engine = SyncEngine(sqlite_store, cfg, pm, {"hs": adapter}, now=fake.clock.now)
    engine.run(["hs"])
    with sqlite_store.connect() as conn:
        golden = dict(conn.execute(select(s.source_links.c.source_id, s.source_links.c.customer_id)
                                   .where(s.source_links.c.entity == "customer")).all())
    ctx = StoreContext(sqlite_store, cfg, pm, now=fake.clock.now())
    for i, cid in enumerate(ids):
        ctx.set_traits(golden[cid], {"acme.tier": ["gold", "silver", "bronze"][i]}, producer="test")
    ctx.emit_action(Action(kind="task", customer_id=golden[ids[0]], key="nps-42", subject="Call the detractor",
                           body="Score 3", due_at=fake.clock.now() + timedelta(days=1), priority="high"))
    ctx.flush()
    report = deliver(sqlite_store, {"hs": adapter}, now=fake.clock.now(), pm=pm)

    assert [fake.get("contacts", cid)["cx_tier"] for cid in ids] == ["gold", "silver", "bronze"]
    assert fake.count("POST", "/contacts/batch/update$") == 1  # three values, one batch call
    [task_id] = [str(i) for i in fake.objects["tasks"]]
    task = fake.get("tasks", task_id)
    assert task["hs_task_subject"] == "Call the detractor" and task["hs_task_priority"] == "HIGH"
    assert fake.assoc[("tasks", int(task_id))]["contacts"] == {int(ids[0])}
    assert report is not None

    # our own writes come back through the next sync without planning new writes (no ping-pong)
    fake.clock.sleep(30)
    engine.run(["hs"])
    again = deliver(sqlite_store, {"hs": adapter}, now=fake.clock.now(), pm=pm)
    assert fake.count("POST", "/batch/update$") == 1 and fake.count("POST", "/batch/create$") == 1
    assert again is not None
