"""Write-back outbox: planning, batching, retries, dead letters, consent, human edits, echoes. Both stores."""

from __future__ import annotations

import random
from datetime import timedelta

from outbox_kit import T0, FakeCRM, outbox_rows, refresh_mirror, remote_error, seed_customer, set_traits
from sqlalchemy import select

from cxbridge.config.models import WritebackRule
from cxbridge.errors import RateLimited
from cxbridge.outbox import deliver, filter_own_writes, plan_writebacks, retry_items
from cxbridge.store import Store, schema

pytest_plugins = ["cxbridge.testing.stores"]

TIER = WritebackRule(trait="segments.tier", source="crm", object_type="contacts", field="cx_tier")
NOW = T0 + timedelta(hours=1)


def plan(store: Store, ids, rules=(TIER,), now=NOW):
    with store.begin() as conn:
        return plan_writebacks(conn, list(rules), ids, now=now)


def test_only_changed_values_are_written(store: Store) -> None:
    crm = FakeCRM()
    seed_customer(store, "c1", "1", traits={"segments.tier": "gold"}, mirror={"cx_tier": "silver"}, crm=crm)
    seed_customer(store, "c2", "2", traits={"segments.tier": "gold"}, mirror={"cx_tier": "gold"}, crm=crm)
    seed_customer(store, "c3", "3", traits={"segments.tier": "bronze"}, mirror={"email": "x@y"}, crm=crm)
    report = plan(store, ["c1", "c2", "c3"])
    assert report.enqueued == 2 and report.skipped["unchanged"] == 1
    assert plan(store, ["c1", "c2", "c3"]).enqueued == 0  # the same intent is enqueued once
    result = deliver(store, {"crm": crm}, now=NOW)
    assert result.sent == 2 and result.write_calls["crm"] == 1
    assert sorted(crm.received) == [("contacts", "1", "cx_tier", "gold"), ("contacts", "3", "cx_tier", "bronze")]
    # the mirror is stale (not re-read yet) but we know what we wrote: nothing new is planned
    again = plan(store, ["c1", "c2", "c3"], now=NOW + timedelta(minutes=1))
    assert again.enqueued == 0 and again.skipped["already_written"] == 2
    assert deliver(store, {"crm": crm}, now=NOW + timedelta(minutes=1)).sent == 0
    assert len(crm.received) == 2


def test_values_compared_by_meaning_and_transform_applied(store: Store) -> None:
    crm = FakeCRM()
    rule = WritebackRule(trait="segments.score", source="crm", object_type="contacts", field="score")
    mapped = WritebackRule(
        trait="segments.tier",
        source="crm",
        object_type="contacts",
        field="tier_code",
        transform={"gold": "G", "*": "X"},
    )
    seed_customer(
        store,
        "c1",
        "1",
        traits={"segments.score": 100, "segments.tier": "gold"},
        mirror={"score": "100.0", "tier_code": "G"},
        crm=crm,
    )  # HubSpot returns strings
    seed_customer(
        store,
        "c2",
        "2",
        traits={"segments.score": 7, "segments.tier": "tin"},
        mirror={"score": "", "tier_code": None},
        crm=crm,
    )
    report = plan(store, ["c1", "c2"], rules=[rule, mapped])
    assert report.enqueued == 2 and report.skipped["unchanged"] == 2
    deliver(store, {"crm": crm}, now=NOW)
    assert crm.records[("contacts", "2")] == {"score": 7, "tier_code": "X"}
    assert len(crm.calls) == 1 and len(crm.calls[0]) == 1  # two fields of one record coalesced into one op


def test_batches_follow_the_adapter_batch_size(store: Store) -> None:
    crm = FakeCRM(batch_size=3)
    ids = [f"c{i}" for i in range(7)]
    for i, cid in enumerate(ids):
        seed_customer(store, cid, str(i), traits={"segments.tier": "gold"}, mirror={}, crm=crm)
    assert plan(store, ids).enqueued == 7
    report = deliver(store, {"crm": crm}, now=NOW)
    assert [len(c) for c in crm.calls] == [3, 3, 1] and report.write_calls["crm"] == 3 and report.sent == 7
    # an explicit smaller cap
    crm2 = FakeCRM(batch_size=100)
    for i in range(len(ids)):
        crm2.records[("contacts", str(i))] = {}
    set_traits(store, ids[0], {"segments.tier": "x"})
    for cid in ids[1:]:
        set_traits(store, cid, {"segments.tier": "y"})
    assert plan(store, ids, now=NOW + timedelta(minutes=1)).enqueued == 7
    deliver(store, {"crm": crm2}, now=NOW + timedelta(minutes=1), batch_size=2)
    assert [len(c) for c in crm2.calls] == [2, 2, 2, 1]


def test_retry_with_backoff_then_dead_letter(store: Store) -> None:
    crm = FakeCRM()
    seed_customer(store, "c1", "1", traits={"segments.tier": "gold"}, mirror={}, crm=crm)
    crm.fail["1"] = ("503 service unavailable", True)
    plan(store, ["c1"])
    now, rng = NOW, random.Random(1)
    delays = []
    for attempt in range(1, 6):
        report = deliver(store, {"crm": crm}, now=now, max_attempts=5, rng=rng)
        assert len(crm.calls) == attempt
        row = outbox_rows(store)[0]
        assert row["attempts"] == attempt
        if attempt < 5:
            assert report.retried == 1 and row["status"] == "pending"
            delay = (row["next_attempt_at"] - now).total_seconds()
            base = 30 * 2 ** (attempt - 1)
            assert base / 2 <= delay <= base  # exponential, jittered
            delays.append(delay)
            # not due yet: nothing is sent
            assert deliver(store, {"crm": crm}, now=now + timedelta(seconds=delay - 1)).write_calls["crm"] == 0
            now = row["next_attempt_at"]
        else:
            assert report.dead == 1 and row["status"] == "dead"
            assert "gave up after 5 attempts" in row["last_error"] and "503" in row["last_error"]
    assert delays == sorted(delays)
    assert deliver(store, {"crm": crm}, now=now + timedelta(days=1)).write_calls["crm"] == 0
    # operator fixes the CRM and re-queues the dead letter
    crm.fail.clear()
    with store.begin() as conn:
        assert retry_items(conn, all_dead=True, now=now) == 1
    assert deliver(store, {"crm": crm}, now=now).sent == 1
    assert crm.records[("contacts", "1")]["cx_tier"] == "gold"


def test_non_retryable_failure_is_dead_at_once(store: Store) -> None:
    crm = FakeCRM()
    seed_customer(store, "c1", "1", traits={"segments.tier": "gold"}, mirror={}, crm=crm)
    seed_customer(store, "c2", "2", traits={"segments.tier": "gold"}, mirror={}, crm=crm)
    crm.fail["1"] = ("INVALID_FIELD: No such column 'cx_tier'", False)
    plan(store, ["c1", "c2"])
    report = deliver(store, {"crm": crm}, now=NOW)
    assert report.dead == 1 and report.sent == 1  # a partial failure fails only its own op
    rows = {r["source_id"]: r for r in outbox_rows(store)}
    assert rows["1"]["status"] == "dead" and "INVALID_FIELD" in rows["1"]["last_error"]
    assert rows["1"]["attempts"] == 1 and rows["2"]["status"] == "sent"


def test_adapter_exception_retries_the_whole_batch(store: Store) -> None:
    crm = FakeCRM()
    for i in range(3):
        seed_customer(store, f"c{i}", str(i), traits={"segments.tier": "gold"}, mirror={}, crm=crm)
    plan(store, ["c0", "c1", "c2"])
    crm.raise_on_write = remote_error()
    report = deliver(store, {"crm": crm}, now=NOW)
    assert report.retried == 3 and report.sent == 0
    assert {r["status"] for r in outbox_rows(store)} == {"pending"}
    assert all("RemoteError" in r["last_error"] for r in outbox_rows(store))
    crm.raise_on_write = RateLimited("429", retry_after=900)
    deliver(store, {"crm": crm}, now=NOW + timedelta(hours=1))
    assert all(r["next_attempt_at"] >= NOW + timedelta(hours=1, seconds=900) for r in outbox_rows(store))
    crm.raise_on_write = None
    assert deliver(store, {"crm": crm}, now=NOW + timedelta(hours=2)).sent == 3
    assert len(crm.received) == 3


def test_opted_out_and_erased_customers_are_never_written(store: Store) -> None:
    crm = FakeCRM()
    email_rule = WritebackRule(
        trait="nps.score", source="crm", object_type="contacts", field="nps", consent="email"
    )
    seed_customer(store, "ok", "1", traits={"segments.tier": "gold", "nps.score": 9}, mirror={}, crm=crm)
    seed_customer(store, "out", "2", traits={"segments.tier": "gold"}, mirror={}, crm=crm, opt_out=True)
    seed_customer(store, "gone", "3", traits={"segments.tier": "gold"}, mirror={}, crm=crm, erased=True)
    seed_customer(
        store,
        "nomail",
        "4",
        traits={"segments.tier": "gold", "nps.score": 3},
        mirror={},
        crm=crm,
        consent={"email_opt_out": True},
    )
    report = plan(store, ["ok", "out", "gone", "nomail"], rules=[TIER, email_rule])
    assert report.skipped["consent"] == 5  # out, gone: both rules; nomail: nps (email channel)
    assert report.enqueued == 3  # ok: tier + nps; nomail: tier (processing is allowed)
    # the customer opts out after the write was planned: checked again before sending
    with store.begin() as conn:
        conn.execute(
            schema.customers.update().where(schema.customers.c.id == "nomail").values(processing_opt_out=True)
        )
    result = deliver(store, {"crm": crm}, now=NOW)
    assert result.sent == 2 and result.skipped == 1 and len(crm.calls[0]) == 1  # 2 rows, 1 op
    assert sorted(crm.received) == [("contacts", "1", "cx_tier", "gold"), ("contacts", "1", "nps", 9)]
    assert [r["last_error"] for r in outbox_rows(store) if r["status"] == "skipped"] == ["consent: processing"]


def test_human_edit_is_not_overwritten_unless_the_rule_says_so(store: Store) -> None:
    crm = FakeCRM()
    seed_customer(store, "c1", "1", traits={"segments.tier": "gold"}, mirror={}, crm=crm)
    plan(store, ["c1"])
    deliver(store, {"crm": crm}, now=NOW)
    # a sales rep changes the field in the CRM after our write; the next sync mirrors it
    crm.human_edit("1", "cx_tier", "vip", at=NOW + timedelta(minutes=5))
    record = refresh_mirror(store, crm, "1", at=NOW + timedelta(minutes=6))
    with store.connect() as conn:
        assert filter_own_writes(conn, "crm", [record]) == {}  # not our echo: a human edit
    set_traits(store, "c1", {"segments.tier": "platinum"}, at=NOW + timedelta(minutes=7))
    report = plan(store, ["c1"], now=NOW + timedelta(minutes=7))
    assert report.enqueued == 0 and report.skipped["human_edit"] == 1
    assert deliver(store, {"crm": crm}, now=NOW + timedelta(minutes=8)).sent == 0
    assert crm.records[("contacts", "1")]["cx_tier"] == "vip"
    bold = TIER.model_copy(update={"overwrite_human_edits": True})
    assert plan(store, ["c1"], rules=[bold], now=NOW + timedelta(minutes=9)).enqueued == 1
    deliver(store, {"crm": crm}, now=NOW + timedelta(minutes=9))
    assert crm.records[("contacts", "1")]["cx_tier"] == "platinum"


def test_own_write_echo_is_recognised_and_creates_no_work(store: Store) -> None:
    crm = FakeCRM()
    seed_customer(store, "c1", "1", traits={"segments.tier": "gold"}, mirror={"cx_tier": "old"}, crm=crm)
    plan(store, ["c1"])
    crm.clock = NOW  # the CRM stamps our write a moment after we sent it
    deliver(store, {"crm": crm}, now=NOW)
    before = outbox_rows(store)
    record = crm.record("1")  # the next sync reads our own write back (modstamp bumped by it)
    assert record.modstamp is not None and record.modstamp > NOW
    with store.connect() as conn:
        assert filter_own_writes(conn, "crm", [record]) == {"1": {"cx_tier"}}
    refresh_mirror(store, crm, "1", at=NOW + timedelta(minutes=10))
    report = plan(store, ["c1"], now=NOW + timedelta(minutes=10))
    assert report.enqueued == 0 and report.skipped["unchanged"] == 1
    assert outbox_rows(store) == before
    assert deliver(store, {"crm": crm}, now=NOW + timedelta(minutes=11)).write_calls["crm"] == 0


def test_newer_value_supersedes_a_pending_one(store: Store) -> None:
    crm = FakeCRM()
    seed_customer(store, "c1", "1", traits={"segments.tier": "gold"}, mirror={"cx_tier": "bronze"}, crm=crm)
    plan(store, ["c1"])
    set_traits(store, "c1", {"segments.tier": "silver"})
    report = plan(store, ["c1"])
    assert report.enqueued == 1 and report.superseded == 1
    set_traits(store, "c1", {"segments.tier": "bronze"})  # back to what the CRM has: nothing to send
    report = plan(store, ["c1"])
    assert report.enqueued == 0 and report.superseded == 1
    deliver(store, {"crm": crm}, now=NOW)
    assert crm.received == []
    # A -> B -> A after delivery is a new intent each time
    set_traits(store, "c1", {"segments.tier": "gold"})
    plan(store, ["c1"], now=NOW)
    deliver(store, {"crm": crm}, now=NOW)
    set_traits(store, "c1", {"segments.tier": "bronze"})
    plan(store, ["c1"], now=NOW + timedelta(minutes=1))
    deliver(store, {"crm": crm}, now=NOW + timedelta(minutes=1))
    assert [v for *_, v in crm.received] == ["gold", "bronze"]


def test_deleted_records_and_unknown_sources_are_left_alone(store: Store) -> None:
    crm = FakeCRM()
    seed_customer(store, "c1", "1", traits={"segments.tier": "gold"}, mirror={}, crm=crm)
    with store.begin() as conn:
        conn.execute(schema.source_records.update().values(deleted=True))
    assert plan(store, ["c1"]).skipped["deleted"] == 1
    with store.begin() as conn:
        conn.execute(schema.source_records.update().values(deleted=False))
    plan(store, ["c1"])
    assert deliver(store, {"other": FakeCRM()}, now=NOW).write_calls == {}
    assert [r["status"] for r in outbox_rows(store)] == ["pending"]  # waits for its source


def test_prepare_writes_hook_can_hold_ops_and_sees_results(store: Store) -> None:
    from cxbridge import hookimpl
    from cxbridge.plugins import get_plugin_manager

    seen: list = []

    class Freeze:
        @hookimpl
        def prepare_writes(self, source, ops):
            ops[:] = [op for op in ops if op.source_id != "2"]

        @hookimpl
        def writes_completed(self, source, results):
            seen.extend((source, r.ok) for r in results)

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Freeze(), name="freeze")
    crm = FakeCRM()
    seed_customer(store, "c1", "1", traits={"segments.tier": "gold"}, mirror={}, crm=crm)
    seed_customer(store, "c2", "2", traits={"segments.tier": "gold"}, mirror={}, crm=crm)
    plan(store, ["c1", "c2"])
    report = deliver(store, {"crm": crm}, now=NOW, pm=pm)
    assert report.sent == 1 and report.held == 1 and seen == [("crm", True)]
    held = next(r for r in outbox_rows(store) if r["source_id"] == "2")
    assert held["status"] == "pending" and held["attempts"] == 0 and held["next_attempt_at"] > NOW


def test_two_workers_never_send_the_same_row(store: Store) -> None:
    import threading

    crm = FakeCRM(batch_size=5)
    ids = [f"c{i}" for i in range(40)]
    for i, cid in enumerate(ids):
        seed_customer(store, cid, str(i), traits={"segments.tier": "gold"}, mirror={}, crm=crm)
    plan(store, ids)
    lock = threading.Lock()
    write = crm.write

    def locked_write(ops):
        with lock:
            return write(ops)

    crm.write = locked_write  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            deliver(store, {"crm": crm}, now=NOW, claim_limit=7)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(sid for _, sid, _, _ in crm.received) == sorted(str(i) for i in range(40))
    with store.connect() as conn:
        statuses = conn.execute(select(schema.outbox.c.status)).scalars().all()
    assert statuses == ["sent"] * 40
