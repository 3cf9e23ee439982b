"""Cursor rules (look-back, clamp, never backwards, future cursors) and the engine's paging invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from cxbridge.adapters import Cursor, StreamInfo
from cxbridge.store import schema as s
from cxbridge.sync import cursors
from cxbridge.testing.memory import MemoryAdapter, memory_setup

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
T = NOW - timedelta(days=1)


def test_read_start_applies_lookback_and_drops_last_id() -> None:
    saved = Cursor(modstamp=T, last_id="42", state={"k": 1})
    start = cursors.read_start(saved, timedelta(seconds=300), NOW)
    assert start == Cursor(modstamp=T - timedelta(seconds=300), last_id=None, state={"k": 1})
    assert cursors.read_start(Cursor(), timedelta(seconds=300), NOW) == Cursor()


def test_future_cursor_is_distrusted_on_load() -> None:
    saved = Cursor(modstamp=NOW + timedelta(days=30), last_id="9", state={"k": 1})
    assert cursors.read_start(saved, timedelta(0), NOW) == Cursor(state={"k": 1})


def test_advance_clamps_and_never_moves_backwards() -> None:
    saved = Cursor(modstamp=T, last_id="5")
    # a look-back page lies behind the saved position: keep it, but take the adapter state
    behind = cursors.advance(saved, Cursor(modstamp=T - timedelta(minutes=1), last_id="9", state={"p": 2}), NOW)
    assert (behind.modstamp, behind.last_id, dict(behind.state)) == (T, "5", {"p": 2})
    same_stamp_lower_id = cursors.advance(saved, Cursor(modstamp=T, last_id="4"), NOW)
    assert (same_stamp_lower_id.modstamp, same_stamp_lower_id.last_id) == (T, "5")
    forward = cursors.advance(saved, Cursor(modstamp=T, last_id="6"), NOW)
    assert forward.last_id == "6"
    future = cursors.advance(saved, Cursor(modstamp=NOW + timedelta(hours=1), last_id="7"), NOW)
    assert (future.modstamp, future.last_id) == (NOW, None)


def customers(page_size: int = 1000) -> MemoryAdapter:
    return MemoryAdapter("shop", [StreamInfo("customers", "customers", "customer",
                                             default_mapping={"emails": "email", "first_name": "fn"})],
                         page_size=page_size)


def setup(store: Any, adapter: MemoryAdapter, lookback: int = 0, clock: list[datetime] | None = None) -> Any:
    now = clock or [NOW]
    return memory_setup(store, {"shop": adapter}, config={"sync": {"lookback_seconds": lookback,
                                                                   "safety_margin_seconds": 5}},
                        now=lambda: now[0])


def count(store: Any, table: Any) -> int:
    with store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def saved_cursor(store: Any) -> Cursor:
    with store.connect() as conn:
        return cursors.load_cursor(conn, "shop", "customers")


def test_ten_thousand_records_with_one_timestamp_neither_loop_nor_skip(store: Any) -> None:
    crm = customers(page_size=1000)
    for i in range(10_000):
        crm.put("customers", f"{i:05d}", {"email": f"p{i}@example.com"}, modstamp=T)
    eng = setup(store, crm, lookback=300)
    (run,) = eng.run()
    assert (run.status, run.records_read, run.records_changed, run.pages) == ("succeeded", 10_000, 10_000, 10)
    assert count(store, s.source_records) == 10_000
    assert count(store, s.customers) == 10_000
    assert saved_cursor(store).last_id == "09999"
    # an incremental run re-reads the look-back window (the same 10k) but changes nothing and terminates
    (again,) = eng.run()
    assert (again.status, again.records_changed) == ("succeeded", 0)
    assert count(store, s.customers) == 10_000


def test_lookback_picks_up_late_committed_records(store: Any) -> None:
    crm = customers()
    crm.put("customers", "a", {"email": "a@example.com"}, modstamp=T)
    eng = setup(store, crm, lookback=600)
    eng.run()
    # a record committed late in the CRM with a stamp before the saved cursor
    crm.put("customers", "b", {"email": "b@example.com"}, modstamp=T - timedelta(minutes=5))
    (run,) = eng.run()
    assert run.records_changed == 1
    assert count(store, s.customers) == 2
    assert saved_cursor(store).modstamp == T  # never backwards


def test_cursor_never_passes_run_start_minus_margin(store: Any) -> None:
    crm = customers()
    crm.put("customers", "f", {"email": "f@example.com"}, modstamp=NOW + timedelta(hours=2))  # skewed clock
    clock = [NOW]
    eng = setup(store, crm, clock=clock)
    eng.run()
    assert saved_cursor(store) == Cursor(modstamp=NOW - timedelta(seconds=5), last_id=None)
    # a record written after the run, with a stamp between the clamp and the future record, is not skipped
    crm.put("customers", "g", {"email": "g@example.com"}, modstamp=NOW + timedelta(minutes=1))
    clock[0] = NOW + timedelta(minutes=10)
    (run,) = eng.run()
    assert run.records_changed == 1
    assert count(store, s.customers) == 2


def test_saved_cursor_from_the_future_is_clamped(store: Any) -> None:
    crm = customers()
    crm.put("customers", "a", {"email": "a@example.com"}, modstamp=NOW - timedelta(minutes=1))
    eng = setup(store, crm)
    with store.begin() as conn:
        cursors.save_cursor(conn, "shop", "customers", Cursor(modstamp=NOW + timedelta(days=365), last_id="z"),
                            "run_x", NOW)
    (run,) = eng.run()
    assert run.records_changed == 1
    assert saved_cursor(store).modstamp == NOW - timedelta(minutes=1)


def test_quota_stop_keeps_cursor_at_last_committed_page_and_resumes(store: Any) -> None:
    from cxbridge.errors import QuotaExhausted

    crm = customers(page_size=10)
    for i in range(35):
        crm.put("customers", f"{i:03d}", {"email": f"p{i}@example.com"}, modstamp=T + timedelta(seconds=i))
    crm.fail[("customers", 2)] = QuotaExhausted("daily quota share used", source="shop")
    eng = setup(store, crm)
    (run,) = eng.run()
    assert run.status == "stopped" and "quota" in (run.error or "")
    assert (run.records_read, run.pages) == (20, 2)
    assert saved_cursor(store).last_id == "019"
    (resumed,) = eng.run()
    assert resumed.status == "succeeded"
    assert resumed.records_changed == 15
    assert count(store, s.customers) == 35


def test_records_updated_while_paging_end_up_current(store: Any) -> None:
    crm = customers(page_size=5)
    for i in range(20):
        crm.put("customers", f"{i:03d}", {"email": f"p{i}@example.com", "fn": "v1"}, modstamp=T)
    clock = iter(range(1, 1000))

    def mutate(adapter: MemoryAdapter, stream: str, page: int) -> None:
        if page in (1, 2):  # after pages were read, change a record already read and one not yet read
            stamp = T + timedelta(seconds=next(clock))
            adapter.update("customers", f"{page:03d}", {"fn": f"v2-{page}"}, modstamp=stamp)
            adapter.update("customers", f"{page + 15:03d}", {"fn": f"v2-{page + 15}"}, modstamp=stamp)

    crm.before_page = mutate
    eng = setup(store, crm)
    eng.run()
    crm.before_page = None
    with store.connect() as conn:
        rows = dict(conn.execute(select(s.source_records.c.source_id, s.source_records.c.fields)).all())
    assert {sid: f["fn"] for sid, f in rows.items()} == {sid: f["fn"] for sid, f in crm.live("customers").items()}


def test_ties_compare_numeric_ids_numerically() -> None:
    saved = Cursor(modstamp=T, last_id="9")
    assert cursors.advance(saved, Cursor(modstamp=T, last_id="10"), NOW).last_id == "10"
    assert cursors.advance(saved, Cursor(modstamp=T, last_id="8"), NOW).last_id == "9"
    text = Cursor(modstamp=T, last_id="003A")
    assert cursors.advance(text, Cursor(modstamp=T, last_id="003B"), NOW).last_id == "003B"
    assert cursors.advance(Cursor(modstamp=T), Cursor(modstamp=T, last_id="1"), NOW).last_id == "1"
    assert cursors.advance(saved, Cursor(modstamp=T), NOW).last_id == "9"
