"""`cxbridge init`, `config schema`, and building adapters for configured sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel, ConfigDict, SecretStr

from cxbridge import hookimpl
from cxbridge.adapters import Adapter, AdapterInfo, Cursor, StreamInfo
from cxbridge.cli.app import create_app
from cxbridge.cli.runner import run
from cxbridge.config import config_from_dict, load_config
from cxbridge.http import ApiStats, CxClient
from cxbridge.plugins import get_plugin_manager
from cxbridge.ratelimit import TokenBucket
from cxbridge.retry import RecordingSleep
from cxbridge.sources import DictState, build_adapter


class Conn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: SecretStr


class Probe(Adapter):
    """Records what the framework gave it."""

    def streams(self) -> list[StreamInfo]:
        return [StreamInfo("contacts", "contacts", "customer")]

    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Any:
        return iter(())


class Plugin:
    @hookimpl
    def register_adapters(self) -> list[AdapterInfo]:
        return [AdapterInfo("probe", Conn, Probe)]


@pytest.fixture
def pm() -> Any:
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(Plugin(), name="probe-plugin")
    return manager


def _cli(pm: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run(argv, app=create_app(plugin_manager_factory=lambda: pm))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_init_writes_a_starter_config_that_loads(
    tmp_path: Path, pm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = tmp_path / "ws"
    code, out, _ = _cli(pm, ["init", str(workspace)], capsys)
    assert code == 0 and "cxbridge.toml" in out
    path = workspace / "cxbridge.toml"
    text = path.read_text()
    assert text.count("#") > 20  # commented
    config = load_config(path, pm=pm, env={})
    assert config.store.url == f"sqlite:///{(workspace / 'cxbridge.db').resolve()}"
    assert config.identity.match_on == ["email", "phone"] and config.sources == {}

    # every commented example is valid TOML and the source/plugin tables have the documented shape
    import re
    import tomllib

    example_line = re.compile(r'^# (\[.*\]|[a-z_."]+ = .*)$')
    uncommented = "\n".join(line[2:] if example_line.match(line) else line for line in text.splitlines())
    example = tomllib.loads(uncommented)
    assert example["sources"]["shop"]["adapter"] == "local-sql"
    assert set(example["sources"]["shop"]) == {"adapter", "enabled", "interval_seconds", "connection", "streams"}
    assert example["sources"]["shop"]["connection"] == {
        "url": "sqlite:///shop.db",
        "objects": {"customers": {"table": "customers", "change_column": "updated_at"}},
    }
    assert example["sources"]["shop"]["streams"]["customers"]["mapping"]["emails"] == ["email", "email2"]
    assert example["sources"]["hubspot"]["connection"]["token"] == {"env": "HUBSPOT_TOKEN"}
    assert example["writeback"][0]["trait"] == "segments.tier"


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, pm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cxbridge.toml"
    path.write_text("# mine\n")
    code, _, err = _cli(pm, ["init", str(tmp_path)], capsys)
    assert code == 2 and "already exists" in err and "--force" in err
    assert path.read_text() == "# mine\n"
    code, _, _ = _cli(pm, ["init", str(tmp_path), "--force"], capsys)
    assert code == 0 and "[store]" in path.read_text()


def test_config_schema_command(pm: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(pm, ["config", "schema"], capsys)
    assert code == 0
    schema = json.loads(out)
    assert "sources" in schema["properties"]
    assert schema["$defs"]["WritebackRule"]["properties"]["consent"]["enum"][0] == "email"


def test_build_adapter_context(pm: Any, tmp_path: Path) -> None:
    config = config_from_dict(
        {"sources": {"crm": {"adapter": "probe", "connection": {"token": {"env": "T"}}}}},
        workspace=tmp_path,
        pm=pm,
        env={"T": "probe-token-123"},
    )
    router = respx.Router()
    router.get("https://crm.example/x").mock(side_effect=[httpx.Response(503), httpx.Response(200, json={"a": 1})])
    sleep = RecordingSleep()
    stats = ApiStats()
    adapter = build_adapter(
        config,
        "crm",
        pm=pm,
        sleep=sleep,
        stats=stats,
        http_defaults={"transport": httpx.MockTransport(router.handler)},
    )
    assert isinstance(adapter, Probe) and adapter.config.token.get_secret_value() == "probe-token-123"
    ctx = adapter.context
    assert ctx.source == "crm" and tuple(ctx.secrets) == ("probe-token-123",)
    assert isinstance(ctx.state, DictState)
    ctx.state.set("refresh_token", "r1")
    assert ctx.state.get("refresh_token") == "r1"

    # the http factory: retries with the context's sleep, counts into the source's stats
    with ctx.http(base_url="https://crm.example", secrets=["extra-secret"]) as client:
        assert isinstance(client, CxClient)
        assert client.get("/x").json() == {"a": 1}
    assert len(sleep.calls) == 1 and stats.calls == 2

    budget = ctx.budget_factory("crm:acct", 100, 10)
    assert isinstance(budget, TokenBucket) and ctx.budget_factory("crm:acct", 100, 10) is budget


def test_build_adapter_uses_store_state(pm: Any, tmp_path: Path) -> None:
    from cxbridge.store import open_store
    from cxbridge.store.state import SourceState

    config = config_from_dict(
        {"sources": {"crm": {"adapter": "probe", "connection": {"token": "inline-token-1"}}}},
        workspace=tmp_path,
        pm=pm,
    )
    store = open_store(f"sqlite:///{tmp_path / 'cx.db'}")
    try:
        adapter = build_adapter(config, "crm", pm=pm, store=store)
        assert isinstance(adapter.context.state, SourceState)
        adapter.context.state.set("k", {"v": 1})
        again = build_adapter(config, "crm", pm=pm, store=store)
        assert again.context.state.get("k") == {"v": 1}
    finally:
        store.close()
