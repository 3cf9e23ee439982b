"""The demo end to end, asserted against the ground truth of its seed data (``cxbridge.demo.data.people()``).

The demo runs once per module (a few seconds); the CLI determinism tests run it twice more.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from cxbridge.bridge import Bridge
from cxbridge.demo import data
from cxbridge.demo.run import DemoResult, run_demo
from cxbridge.plugins import get_plugin_manager
from cxbridge.store import schema as s

WIDTH = 120


@dataclass
class Demo:
    result: DemoResult
    output: str
    workspace: Path
    links: dict[tuple[str, str], str]  # (source, source_id) -> golden id
    population: list[data.DemoPerson]


def _links(workspace: Path) -> dict[tuple[str, str], str]:
    with Bridge.from_config(workspace / "cxbridge.toml", pm=get_plugin_manager()) as bridge, \
            bridge.store.connect() as conn:
        return {(r.source, r.source_id): r.customer_id for r in conn.execute(
            select(s.source_links).where(s.source_links.c.customer_id.is_not(None)))}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    from rich.console import Console

    out = io.StringIO()
    workspace = tmp_path_factory.mktemp("demo-a") / "ws"
    result = run_demo(workspace, pm=get_plugin_manager(), console=Console(file=out, width=WIDTH))
    return Demo(result, out.getvalue(), workspace, _links(workspace), data.people())


def shop_id(p: data.DemoPerson) -> tuple[str, str]:
    return ("shop", str(1000 + p.index))


def cc_id(p: data.DemoPerson) -> tuple[str, str]:
    return ("callcentre", f"CC-{5000 + p.index}")


# --------------------------------------------------------------------------------------- identity resolution


def test_one_golden_customer_per_person(demo: Demo) -> None:
    st = demo.result.status
    assert st["customers"] == len(demo.population) == 240
    both = [p for p in demo.population if p.in_shop and p.in_callcentre]
    assert st["customers_in_several_sources"] == len(both)
    assert st["links"] == {"callcentre/contacts": sum(p.in_callcentre for p in demo.population),
                           "shop/customers": sum(p.in_shop for p in demo.population)}


def test_identity_resolution_links_exactly_the_records_of_each_person(demo: Demo) -> None:
    """Person by person: their shop and call-centre records share one golden id, nobody else's."""
    golden_of: dict[int, set[str]] = {}
    for p in demo.population:
        keys = ([shop_id(p)] if p.in_shop else []) + ([cc_id(p)] if p.in_callcentre else [])
        golden_of[p.index] = {demo.links[k] for k in keys}
    split = [p.index for p in demo.population if len(golden_of[p.index]) != 1]
    owners: dict[str, list[int]] = defaultdict(list)
    for index, ids in golden_of.items():
        for gid in ids:
            owners[gid].append(index)
    fused = {gid: people for gid, people in owners.items() if len(people) > 1}
    assert split == [], f"people split over several golden records: {split}"
    assert fused == {}, f"different people fused into one golden record: {fused}"


def test_every_order_and_call_is_an_interaction_of_the_right_person(demo: Demo) -> None:
    db = sqlite3.connect(demo.workspace / "shop.db")
    try:
        orders = {str(oid): str(cid) for oid, cid in db.execute("SELECT id, customer_id FROM orders")}
    finally:
        db.close()
    with (demo.workspace / "callcentre" / "calls-2026-10-31.csv").open(encoding="utf-8") as f:
        calls = {row["call_id"]: row["contact_id"] for row in csv.DictReader(f)}
    with Bridge.from_config(demo.workspace / "cxbridge.toml", pm=get_plugin_manager()) as bridge, \
            bridge.store.connect() as conn:
        stored = {(r.source, r.object_type, r.source_id): (r.customer_id, r.deleted)
                  for r in conn.execute(select(s.interactions))}
    expected = {("shop", "orders", oid): (demo.links[("shop", cid)], False) for oid, cid in orders.items()}
    expected |= {("callcentre", "calls", kid): (demo.links[("callcentre", cid)], False)
                 for kid, cid in calls.items()}
    assert len(orders) == 825 and len(calls) == 289
    assert stored == expected
    assert demo.result.status["interactions"] == len(orders) + len(calls)


def test_nothing_quarantined_and_no_plugin_failures(demo: Demo) -> None:
    assert demo.result.status["quarantine_open"] == 0
    assert demo.result.status["plugin_failures"] == 0
    assert all(r.records_quarantined == 0 and r.status == "succeeded" for r in demo.result.runs)
    assert "segments.refit" in demo.result.jobs
    assert demo.result.job_failures == {}


# ------------------------------------------------------------------------------------------------ write-back


def test_write_backs_land_in_the_shop_and_equal_the_traits(demo: Demo) -> None:
    db = sqlite3.connect(demo.workspace / "shop.db")
    try:
        columns = {str(cid): (seg, tier) for cid, seg, tier in db.execute(
            "SELECT id, cx_segment, cx_tier FROM customers")}
    finally:
        db.close()
    with Bridge.from_config(demo.workspace / "cxbridge.toml", pm=get_plugin_manager()) as bridge, \
            bridge.store.connect() as conn:
        traits = {(r.customer_id, r.name): r.value for r in conn.execute(
            select(s.traits).where(s.traits.c.name.in_(["segments.rfm_segment", "segments.tier"])))}
        outbox = {r.status for r in conn.execute(select(s.outbox.c.status))}
    assert outbox <= {"sent", "skipped"} and "sent" in outbox  # skipped: superseded by the refit's values
    expected = {
        cid: (traits.get((demo.links[("shop", cid)], "segments.rfm_segment")),
              traits.get((demo.links[("shop", cid)], "segments.tier")))
        for cid in columns
    }
    assert columns == expected
    tiers = {tier for _seg, tier in columns.values()}
    segments = {seg for seg, _tier in columns.values() if seg}
    assert {"bronze", "silver", "gold"} <= tiers  # scored on the synced purchases, not a degenerate model
    assert len(segments) >= 5
    assert demo.result.shop_written == {"cx_segment": sum(1 for seg, _ in columns.values() if seg is not None),
                                        "cx_tier": len(columns)}


def test_second_sync_recognises_our_own_write_backs(demo: Demo) -> None:
    """Re-reading the shop after the write-back is allowed; counting our own echoes as changes is not."""
    changed = {(r.source, r.stream): r.records_changed for r in demo.result.second_runs}
    assert changed == {("shop", "customers"): 0, ("shop", "orders"): 0, ("callcentre", "contacts"): 0,
                       ("callcentre", "calls"): 0}


# ---------------------------------------------------------------------------------------------------- output


def test_output_shows_summary_and_a_sample_360_view(demo: Demo) -> None:
    text = demo.output
    assert "│ golden customers                         │ 240" in text
    assert "known to both CRMs (identities resolved) │ 130" in text
    assert demo.result.sample_email and f"sample customer ({demo.result.sample_email})" in text
    assert "cus_" not in text  # no generated ids in the deterministic output
    view_part = text.split("360° view of a sample customer")[1]
    assert "callcentre" in view_part and "shop" in view_part and "segments.tier" in view_part


def _cli_demo(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from cxbridge.cli.runner import run

    capsys.readouterr()
    code = run(["demo", str(directory)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _masked(text: str, workspace: Path) -> str:
    return text.replace(str(workspace.resolve()), "<WS>")


def test_cli_demo_output_is_deterministic(demo: Demo, tmp_path_factory: pytest.TempPathFactory,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path_factory.mktemp("demo-b") / "ws"  # same path length as the module's demo workspace
    code, out, err = _cli_demo(other, capsys)
    assert code == 0, err
    assert _masked(out, other) == _masked(demo.output, demo.workspace)


def test_cli_demo_refuses_a_foreign_folder_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me", encoding="utf-8")
    code, out, err = _cli_demo(folder, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "not empty" in lines[0] and str(folder.resolve()) in " ".join(err.split())
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert out == ""


def test_cli_demo_file_instead_of_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "demo.txt"
    target.write_text("x", encoding="utf-8")
    code, _out, err = _cli_demo(target, capsys)
    assert code == 2 and "is a file, not a folder" in err


def test_cli_demo_again_into_the_same_folder_recreates_it(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    """Last in the module: it re-creates the shared workspace (links are re-read for any test after it)."""
    (demo.workspace / "cxbridge.db").write_bytes(b"stale")  # whatever was there is replaced
    (demo.workspace / "callcentre" / "contacts-2026-09-30.csv").write_text("junk", encoding="utf-8")
    code, out, err = _cli_demo(demo.workspace, capsys)
    assert code == 0, err
    assert out == demo.output
    assert sorted(p.name for p in (demo.workspace / "callcentre").iterdir()) == [
        "calls-2026-10-31.csv", "contacts-2026-10-31.csv"]
    demo.links = _links(demo.workspace)
