"""CLI: `cxbridge db`, `cxbridge outbox` and `cxbridge forget` against a real workspace (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from outbox_kit import T0, FakeCRM, outbox_rows, seed_customer
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from cxbridge import hookimpl
from cxbridge.adapters import AdapterInfo, RecordRef
from cxbridge.cli.app import create_app
from cxbridge.cli.runner import run
from cxbridge.config.models import WritebackRule
from cxbridge.outbox import deliver, plan_writebacks
from cxbridge.plugins import get_plugin_manager
from cxbridge.store import open_store, schema
from cxbridge.store.migrate import head_revision

TIER = WritebackRule(trait="segments.tier", source="crm", object_type="contacts", field="cx_tier")


class NoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


@pytest.fixture
def crm() -> FakeCRM:
    return FakeCRM()


@pytest.fixture
def workspace(tmp_path: Path, crm: FakeCRM, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: no folding of long cells

    class Plugin:
        @hookimpl
        def register_adapters(self) -> list[AdapterInfo]:
            return [AdapterInfo("fake-crm", NoConfig, lambda config, context: crm)]

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Plugin(), name="fake-crm-plugin")
    config = tmp_path / "cxbridge.toml"
    config.write_text('[store]\nurl = "sqlite:///data/cx.db"\n\n[sources.crm]\nadapter = "fake-crm"\n')
    return {"pm": pm, "config": config, "url": f"sqlite:///{tmp_path / 'data' / 'cx.db'}"}


def cli(ws: dict[str, Any], capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(["--config", str(ws["config"]), *argv], app=create_app(plugin_manager_factory=lambda: ws["pm"]))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_db_current_and_upgrade(workspace, capsys) -> None:
    code, out, _ = cli(workspace, capsys, "db", "current", "--json")
    assert code == 1 and json.loads(out) == {
        "url": workspace["url"],
        "revision": None,
        "head": head_revision(),
        "up_to_date": False,
    }
    code, out, _ = cli(workspace, capsys, "db", "upgrade")
    assert code == 0 and f"upgraded from empty to {head_revision()}" in out
    code, out, _ = cli(workspace, capsys, "db", "upgrade")
    assert code == 0 and "up to date" in out
    code, out, _ = cli(workspace, capsys, "db", "current")
    assert code == 0 and "up to date" in out


def test_outbox_list_dead_retry_send(workspace, crm, capsys) -> None:
    with open_store(workspace["url"]) as store:
        seed_customer(store, "c1", "1", traits={"segments.tier": "gold"}, mirror={}, crm=crm)
        seed_customer(store, "c2", "2", traits={"segments.tier": "gold"}, mirror={}, crm=crm)
        with store.begin() as conn:
            plan_writebacks(conn, [TIER], ["c1", "c2"], now=T0)
        crm.fail["2"] = ("INVALID_FIELD cx_tier", False)
        deliver(store, {"crm": crm}, now=T0)
        dead_id = next(r["id"] for r in outbox_rows(store) if r["status"] == "dead")
    code, out, _ = cli(workspace, capsys, "outbox", "list", "--json")
    items = json.loads(out)
    assert code == 0 and sorted(i["status"] for i in items) == ["dead", "sent"]
    code, out, _ = cli(workspace, capsys, "outbox", "list", "--status", "dead", "--json")
    assert [i["id"] for i in json.loads(out)] == [dead_id]
    code, out, _ = cli(workspace, capsys, "outbox", "dead")
    assert code == 0 and "INVALID_FIELD" in out and "1 sent" not in out
    code, out, _ = cli(workspace, capsys, "outbox", "list")
    assert code == 0 and "1 sent" in out and "1 dead" in out
    code, _, err = cli(workspace, capsys, "outbox", "list", "--status", "nope")
    assert code == 2 and "unknown status" in err
    code, _, err = cli(workspace, capsys, "outbox", "retry", "999")
    assert code != 0 and "no outbox item with id 999" in err
    code, _, err = cli(workspace, capsys, "outbox", "retry")
    assert code == 2 and "--all-dead" in err
    crm.fail.clear()
    code, out, _ = cli(workspace, capsys, "outbox", "retry", str(dead_id))
    assert code == 0 and "re-queued 1" in out
    code, out, _ = cli(workspace, capsys, "outbox", "send")
    assert code == 0 and "sent 1," in out
    assert crm.records[("contacts", "2")]["cx_tier"] == "gold"
    code, _, err = cli(workspace, capsys, "outbox", "retry", str(dead_id))
    assert code == 2 and "sent already" in err


def test_forget_cli(workspace, crm, capsys) -> None:
    with open_store(workspace["url"]) as store:
        seed_customer(store, "cus_ann", "1", mirror={}, crm=crm, emails=["ann@example.com"])
        seed_customer(store, "cus_bob", "2", mirror={}, crm=crm, emails=["bob@example.com"])
    code, _, err = cli(workspace, capsys, "forget", "nobody@example.com", "--yes")
    assert code == 1 and "no customer matches" in err
    code, out, _ = cli(workspace, capsys, "forget", "Ann@Example.com", "--yes", "--json")
    report = json.loads(out)
    assert code == 0 and report["customer_id"] == "cus_ann" and report["sources"] == {"crm": "erased"}
    assert ("contacts", "1") not in crm.records
    with open_store(workspace["url"]) as store, store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.customers)).scalar_one() == 1
    code, out, _ = cli(workspace, capsys, "forget", "bob@example.com", "--yes")
    assert code == 0 and "cus_bob" in out and "erased" in out


def test_erasures_cli_lists_and_retries_what_a_crm_did_not_erase(workspace, crm, capsys, monkeypatch) -> None:
    from outbox_kit import remote_error

    with open_store(workspace["url"]) as store:
        seed_customer(store, "cus_ann", "1", mirror={}, crm=crm, emails=["ann@example.com"])

    def down(refs):  # type: ignore[no-untyped-def]
        raise remote_error()

    monkeypatch.setattr(crm, "erase", down)
    code, out, _ = cli(workspace, capsys, "forget", "ann@example.com", "--yes")
    assert code == 1 and "failed: RemoteError" in out and "cxbridge erasures retry" in out
    code, out, _ = cli(workspace, capsys, "erasures", "list", "--json")
    (row,) = json.loads(out)
    assert code == 0 and (row["source"], row["object_type"], row["source_id"], row["attempts"]) == (
        "crm", "contacts", "1", 1) and "503" in row["last_error"]
    code, out, _ = cli(workspace, capsys, "erasures", "retry")
    assert code == 1 and out.startswith("crm: 0 erased, 1 still pending (RemoteError")
    code, out, _ = cli(workspace, capsys, "status")
    assert code == 0 and "erasures: 1 CRM record(s) of forgotten people still to erase" in out
    monkeypatch.undo()
    code, out, _ = cli(workspace, capsys, "erasures", "list")
    assert code == 0 and "pending CRM erasures (1)" in out and "contacts" in out
    code, out, _ = cli(workspace, capsys, "erasures", "retry")
    assert code == 0 and out == "crm: 1 erased, 0 still pending\n"
    assert ("contacts", "1") not in crm.records and crm.erased == [RecordRef("contacts", "1")]
    code, out, _ = cli(workspace, capsys, "erasures", "retry")
    assert code == 0 and out == "no CRM erasures pending\n"
    code, out, _ = cli(workspace, capsys, "status")
    assert code == 0 and "erasures:" not in out
