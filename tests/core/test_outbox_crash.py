"""Outbox crash safety and closed-loop actions. Both stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from outbox_kit import T0, Crash, FakeCRM, outbox_rows, seed_customer

from cxbridge.config.models import WritebackRule
from cxbridge.hooktypes import Action
from cxbridge.outbox import deliver, enqueue_action, plan_writebacks
from cxbridge.store import Store

pytest_plugins = ["cxbridge.testing.stores"]

TIER = WritebackRule(trait="segments.tier", source="crm", object_type="contacts", field="cx_tier")
NOW = T0 + timedelta(hours=1)


def _action(cid: str, key: str = "nps-detractor-1", **kw) -> Action:
    return Action(
        kind="task", customer_id=cid, key=key, subject="Call back detractor", body="NPS 3", producer="nps", **kw
    )


def test_crash_between_write_and_commit_writes_each_value_once(store: Store) -> None:
    crm = FakeCRM(batch_size=2)
    for i in range(3):
        seed_customer(store, f"c{i}", str(i), traits={"segments.tier": f"t{i}"}, mirror={}, crm=crm)
    with store.begin() as conn:
        plan_writebacks(conn, [TIER], ["c0", "c1", "c2"], now=NOW)
        assert enqueue_action(conn, _action("c0"), writable_sources={"crm"}, now=NOW) == 1
    crm.crash_after_write = True
    with pytest.raises(Crash):
        deliver(store, {"crm": crm}, now=NOW)  # the CRM applied the first batch, we died before recording it
    assert {r["status"] for r in outbox_rows(store)} == {"pending"}
    # restarted worker before the lease ran out: nothing is sent twice concurrently
    assert deliver(store, {"crm": crm}, now=NOW + timedelta(seconds=10)).write_calls["crm"] == 0
    crm.crash_after_write = "create"  # second life: updates recorded, then death right after the create
    with pytest.raises(Crash):
        deliver(store, {"crm": crm}, now=NOW + timedelta(seconds=301))  # lease expired: re-sent
    assert [r["status"] for r in outbox_rows(store)] == ["sent", "sent", "sent", "pending"]
    crm.crash_after_write = False
    report = deliver(store, {"crm": crm}, now=NOW + timedelta(seconds=700))
    assert report.sent == 1 and {r["status"] for r in outbox_rows(store)} == {"sent"}
    assert {sid: rec["cx_tier"] for (_, sid), rec in crm.records.items()} == {"0": "t0", "1": "t1", "2": "t2"}
    counts = Counter(crm.received)
    assert max(counts.values()) <= 2 and len(counts) == 3  # updates: idempotent re-send, nothing else
    assert len(crm.created) == 1  # the task: created once, de-duplicated by the op's idempotency key
    ((task_id, fields),) = crm.created.values()
    rows = {r["action"]: r for r in outbox_rows(store)}
    assert rows["create"]["result_id"] == task_id and fields["subject"] == "Call back detractor"
    # the same op key was used both times
    create_keys = [op.key for call in crm.calls for op in call if op.action == "create"]
    assert len(create_keys) == 2 and len(set(create_keys)) == 1


def test_actions_respect_consent_links_and_keys(store: Store) -> None:
    crm, erp = FakeCRM(), FakeCRM()
    seed_customer(store, "c1", "1", mirror={}, crm=crm)
    seed_customer(store, "c2", "2", mirror={}, crm=crm, consent={"phone_opt_out": True})
    with store.begin() as conn:  # c1 is also linked in a second, read-only source
        from cxbridge.store import schema

        conn.execute(
            schema.source_links.insert(),
            {
                "source": "erp",
                "object_type": "debtors",
                "source_id": "D9",
                "entity": "customer",
                "customer_id": "c1",
                "linked_at": T0,
            },
        )
        assert enqueue_action(conn, _action("c1"), writable_sources={"crm"}, now=NOW) == 1
        assert enqueue_action(conn, _action("c1"), writable_sources={"crm"}, now=NOW) == 0  # same key
        assert enqueue_action(conn, _action("c2", channel="phone"), writable_sources={"crm"}, now=NOW) == 0
        assert (
            enqueue_action(
                conn, _action("c1", key="k2", sources=("erp",)), writable_sources={"crm", "erp"}, now=NOW
            )
            == 1
        )
        assert enqueue_action(conn, _action("nobody"), writable_sources={"crm"}, now=NOW) == 0
    deliver(store, {"crm": crm, "erp": erp}, now=NOW)
    (crm_op,) = [op for call in crm.calls for op in call]
    assert crm_op.action == "create" and crm_op.object_type == "task"
    assert dict(crm_op.associations) == {"contacts": ["1"]}
    assert crm_op.fields["priority"] == "normal" and crm_op.fields["body"] == "NPS 3"
    (erp_op,) = [op for call in erp.calls for op in call]
    assert dict(erp_op.associations) == {"debtors": ["D9"]}


_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from datetime import datetime, timedelta
    sys.path.insert(0, {kit!r})
    from outbox_kit import FakeCRM
    from cxbridge.outbox import deliver
    from cxbridge.store import open_store

    log = {log!r}

    class DurableCRM(FakeCRM):
        def write(self, ops):
            results = super().write(ops)
            with open(log, "a") as fh:  # what the CRM applied, durable before we die
                for op in ops:
                    fh.write(json.dumps({{"key": op.key, "action": op.action, "id": op.source_id,
                                          "fields": dict(op.fields)}}) + "\\n")
                fh.flush(); os.fsync(fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after the CRM answered
            return results

    crm = DurableCRM(batch_size=2)
    for i in range(3):
        crm.records[("contacts", str(i))] = {{}}
    deliver(open_store({url!r}), {{"crm": crm}}, now=datetime.fromisoformat({now!r}))
    """
)


def test_kill_9_after_the_crm_answered_then_restart(store: Store, tmp_path: Path) -> None:
    crm = FakeCRM(batch_size=2)
    for i in range(3):
        seed_customer(store, f"c{i}", str(i), traits={"segments.tier": f"t{i}"}, mirror={}, crm=crm)
    with store.begin() as conn:
        plan_writebacks(conn, [TIER], ["c0", "c1", "c2"], now=NOW)
    log = tmp_path / "crm.jsonl"
    script = _CHILD.format(
        kit=str(Path(__file__).parent),
        log=str(log),
        now=NOW.isoformat(),
        url=store.engine.url.render_as_string(hide_password=False),
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    applied = [line for line in log.read_text().splitlines() if line]
    assert len(applied) == 2  # first batch reached the CRM, then the process died
    assert {r["status"] for r in outbox_rows(store)} == {"pending"}
    report = deliver(store, {"crm": crm}, now=NOW + timedelta(minutes=6))
    assert report.sent == 3 and {r["status"] for r in outbox_rows(store)} == {"sent"}
    assert {sid: rec["cx_tier"] for (_, sid), rec in crm.records.items()} == {"0": "t0", "1": "t1", "2": "t2"}
