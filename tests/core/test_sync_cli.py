"""``cxbridge sync``, ``status`` and ``quarantine list|replay|discard`` through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cxbridge.cli import main
from cxbridge.store import open_store
from cxbridge.store import schema as s


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "contacts.csv").write_text(
        "id,name,email,changed\n"
        "c1,Ann Lee,ann@example.com,2024-03-01T10:00:00Z\n"
        "c2,Bob,bob at example.com,2024-03-01T10:00:00Z\n"
        "c3,Cy,cy@example.com,2024-03-01T10:00:00Z,extra\n"
    )
    config = tmp_path / "cxbridge.toml"
    config.write_text(
        """
[store]
url = "sqlite:///store.db"

[sources.calls]
adapter = "local-files"

[sources.calls.connection]
folder = "drop"

[sources.calls.connection.objects.contacts]
pattern = "*.csv"
id_column = "id"
modstamp_column = "changed"
mapping = { full_name = "name", emails = "email" }
"""
    )
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "cxbridge-local")
    monkeypatch.setenv("CXBRIDGE_CONFIG", str(config))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: no ellipsis in captured output
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _rows(workspace: Path, query: Any) -> list[Any]:
    with open_store(f"sqlite:///{workspace / 'store.db'}") as store, store.connect() as conn:
        return list(conn.execute(query))


def test_sync_status_and_quarantine_commands(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync"]) == 0
    out = capsys.readouterr().out
    assert "sync summary" in out and "succeeded" in out
    assert [r.display_name for r in _rows(workspace, select(s.customers.c.display_name))] == ["Ann Lee"]

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "calls" in out and "contacts" in out and "quarantine: 2 open" in out

    assert main(["quarantine", "list"]) == 0
    out = capsys.readouterr().out
    assert "c2" in out and "emails" in out

    q = {r.source_id: r.id for r in _rows(workspace, select(s.quarantine.c.id, s.quarantine.c.source_id))}
    # replay without a fix: still failing, exit code 1, reason kept
    assert main(["quarantine", "replay", str(q["c2"])]) == 1
    assert "still failing 1" in capsys.readouterr().out

    # the malformed row cannot be fixed by config: discard it
    assert main(["quarantine", "discard", str(next(v for k, v in q.items() if k != "c2"))]) == 0
    # fix the config (keep the unusable address as a custom attribute instead of an email) and replay
    config = workspace / "cxbridge.toml"
    config.write_text(config.read_text().replace('emails = "email"', '"custom.email_as_typed" = "email"'))
    assert main(["quarantine", "replay", "--all"]) == 0
    assert "replayed 1; still failing 0" in capsys.readouterr().out
    statuses = dict(_rows(workspace, select(s.quarantine.c.source_id, s.quarantine.c.status)))
    assert statuses["c2"] == "replayed"
    assert sorted(statuses.values()) == ["discarded", "replayed"]
    names = sorted(r.display_name for r in _rows(workspace, select(s.customers.c.display_name)))
    assert names == ["Ann Lee", "Bob"]


def test_sync_unknown_source_is_a_config_error(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "nope"]) == 2
    assert "sources.nope" in capsys.readouterr().err
