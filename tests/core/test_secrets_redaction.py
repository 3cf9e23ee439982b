"""Secrets never reach logs, errors, reprs, doctor output or CLI tracebacks."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import typer
from pydantic import BaseModel, ConfigDict, SecretStr

from cxbridge import hookimpl
from cxbridge.adapters import Adapter, AdapterInfo, CheckResult, Cursor, StreamInfo
from cxbridge.cli.app import create_app
from cxbridge.cli.runner import run
from cxbridge.config import config_from_dict, load_config
from cxbridge.errors import ConfigError, RemoteError
from cxbridge.hooktypes import CommandInfo, SettingsInfo
from cxbridge.logs import format_exception, setup_logging, uninstall_record_redaction
from cxbridge.plugins import get_plugin_manager
from cxbridge.secrets import MASK, SecretRegistry, redact, registry

TOKEN = "sk-live-4f3e2d1c0b9a8877"  # what the environment holds; must never be printed


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    uninstall_record_redaction()


# ----------------------------------------------------------------------------------------------------------
# redact()
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("GET /crm/v3?hapikey=abcd1234&limit=10", "GET /crm/v3?hapikey=***&limit=10"),
        ('{"access_token": "eyJhbGci.x.y", "expires_in": 3600}', '{"access_token": "***", "expires_in": 3600}'),
        ("{'refresh_token': 'r-1234', 'a': 1}", "{'refresh_token': '***', 'a': 1}"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: ***"),
        ("sent headers {'Authorization': 'Basic dXNlcjpwYXNz'}", "sent headers {'Authorization': '***'}"),
        ("client_secret=s3cr3t&grant_type=refresh_token", "client_secret=***&grant_type=refresh_token"),
        ("x-api-key: k-99999", "x-api-key: ***"),
        ("<password>hunter2</password> password=hunter2", "<password>hunter2</password> password=***"),
        ("postgresql+psycopg://cx:pw0rd@db/cx", "postgresql+psycopg://cx:***@db/cx"),
        ("no secrets here: 42 contacts", "no secrets here: 42 contacts"),
    ],
)
def test_redact_secret_looking_keys(raw: str, expected: str) -> None:
    assert redact(raw) == expected


def test_redact_known_values_in_any_form() -> None:
    reg = SecretRegistry()
    reg.add("p@ss word/1")
    reg.add("abc")  # too short to be worth redacting everywhere
    assert "abc" not in reg and len(reg) >= 1
    registry.add("p@ss word/1")
    text = "login with p@ss word/1 failed; url ?q=p%40ss%20word%2F1 and q=p%40ss+word%2F1"
    assert redact(text) == f"login with {MASK} failed; url ?q={MASK} and q={MASK}"
    assert redact("value one-off-secret", extra=["one-off-secret"]) == f"value {MASK}"


# ----------------------------------------------------------------------------------------------------------
# Logs
# ----------------------------------------------------------------------------------------------------------


def _emit_everything(log: logging.Logger) -> None:
    log.info("token for %s is %s", "crm", TOKEN)
    log.warning("vendor said: %s", json.dumps({"error": "bad", "echo": TOKEN}))
    log.info("request", extra={"url": f"https://x.example/api?key={TOKEN}"})
    try:
        raise RemoteError(f"401 from CRM: invalid token {TOKEN}", source="crm", status=401)
    except RemoteError:
        log.exception("call failed")


@pytest.mark.parametrize("as_json", [False, True])
def test_log_output_of_real_handler_has_no_secret(as_json: bool) -> None:
    registry.add(TOKEN)
    stream = io.StringIO()
    setup_logging(debug=True, json=as_json, stream=stream)
    _emit_everything(logging.getLogger("cxbridge.test"))
    out = stream.getvalue()
    assert TOKEN not in out
    assert out.count(MASK) >= 4  # the lines are there, only the secret is gone
    assert "RemoteError" in out and "call failed" in out
    if as_json:
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert [line["level"] for line in lines] == ["info", "warning", "info", "error"]
        assert lines[2]["url"] == "https://x.example/api?key=***"


def test_json_format_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXBRIDGE_LOG_JSON", "1")
    stream = io.StringIO()
    setup_logging(stream=stream)
    logging.getLogger("cxbridge.test").info("synced %d records", 7, extra={"source": "crm"})
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["message"], line["source"], line["level"]) == ("synced 7 records", "crm", "info")


def test_caplog_records_are_redacted_at_creation(caplog: pytest.LogCaptureFixture) -> None:
    registry.add(TOKEN)
    setup_logging(debug=True, stream=io.StringIO())
    caplog.set_level(logging.DEBUG)
    # a third-party library logging a secret (httpx logs URLs): redacted too
    logging.getLogger("somelib").warning("GET https://api.example/?access_token=%s", TOKEN)
    _emit_everything(logging.getLogger("cxbridge.test"))
    assert len(caplog.records) == 5
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text


# ----------------------------------------------------------------------------------------------------------
# Config errors and reprs
# ----------------------------------------------------------------------------------------------------------


class Conn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: SecretStr
    base_url: str
    retries: int = 3


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_secret: SecretStr | None = None
    threshold: int = 5


class TokenAdapter(Adapter):
    """Talks to a (local, real) HTTP server; echoes vendor error bodies in its check detail, naively."""

    capabilities = frozenset({"write"})

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.client = context.http(base_url=config.base_url, headers={"X-Client": "cx"})

    def streams(self) -> list[StreamInfo]:
        return [StreamInfo("contacts", "contacts", "customer")]

    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Any:
        return iter(())

    def check(self, required_fields: Any) -> list[CheckResult]:
        token = self.config.token.get_secret_value()
        response = self.client.get("/me", params={"api_key": token})
        if response.status_code != 200:
            return [CheckResult("connection", False, f"HTTP {response.status_code}: {response.text}")]
        fields = set(response.json()["fields"])
        missing = [f for fs in required_fields.values() for f in fs if f not in fields]
        return [
            CheckResult("connection", True, f"authenticated with {token}"),  # careless, on purpose
            CheckResult("fields", not missing, f"missing {missing}" if missing else "all present"),
        ]

    def close(self) -> None:
        self.client.close()


def _factory(config: Any, context: Any) -> Adapter:
    if config.retries < 0:
        raise RuntimeError(f"cannot build with token {config.token.get_secret_value()}")
    return TokenAdapter(config, context)


class Plugin:
    @hookimpl
    def register_adapters(self) -> list[AdapterInfo]:
        return [AdapterInfo("token-crm", Conn, _factory)]

    @hookimpl
    def register_settings(self) -> list[SettingsInfo]:
        return [SettingsInfo("watch", Settings)]

    @hookimpl
    def register_commands(self) -> list[CommandInfo]:
        boom = typer.Typer()

        @boom.command()
        def explode() -> None:
            raise RuntimeError(f"could not connect using {TOKEN}")

        return [CommandInfo("boom", boom, "raises")]


@pytest.fixture
def pm() -> Any:
    manager = get_plugin_manager(load_entrypoints=False)
    manager.register(Plugin(), name="token-plugin")
    return manager


def test_config_error_and_reprs_never_show_secret(pm: Any) -> None:
    env = {"CRM_TOKEN": TOKEN}
    data: dict[str, Any] = {
        "sources": {
            "crm": {"adapter": "token-crm", "connection": {"token": {"env": "CRM_TOKEN"}, "base_url": "x"}}
        },
        "plugins": {"watch": {"webhook_secret": {"env": "CRM_TOKEN"}}},
        "daemon": {"auth_token": {"env": "CRM_TOKEN"}},
    }
    config = config_from_dict(data, pm=pm, env=env)
    assert config.sources["crm"].connection.token.get_secret_value() == TOKEN
    for rendered in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert TOKEN not in rendered

    # a secret resolved into a field of the wrong type: the error names the key, never the value
    data["plugins"]["watch"] = {"threshold": {"env": "CRM_TOKEN"}}
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, pm=pm, env=env)
    assert err.value.key == "plugins.watch.threshold"
    assert TOKEN not in str(err.value) and TOKEN not in repr(err.value)


# ----------------------------------------------------------------------------------------------------------
# doctor and CLI tracebacks, against a real local HTTP server
# ----------------------------------------------------------------------------------------------------------


class Vendor:
    """A tiny CRM: /me answers 200 for the good token, 401 echoing the presented token otherwise."""

    def __init__(self, good_token: str) -> None:
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                presented = query.get("api_key", [""])[0]
                vendor.seen.append(presented)
                if presented == good_token:
                    body, status = json.dumps({"fields": ["email", "cx_tier"]}), 200
                else:
                    body, status = json.dumps({"message": f"invalid api key {presented}"}), 401
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.seen: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    v = Vendor(good_token="good-token-0000")
    yield v
    v.close()


def _workspace(tmp_path: Path, vendor_url: str, *, retries: int = 3) -> Path:
    (tmp_path / "ok.token").write_text("good-token-0000\n")
    path = tmp_path / "cxbridge.toml"
    path.write_text(
        f"""
[store]
url = "sqlite:///cx.db"

[sources.crm]
adapter = "token-crm"
[sources.crm.connection]
token = {{ env = "CRM_TOKEN" }}
base_url = "{vendor_url}"
retries = {retries}

[sources.other]
adapter = "token-crm"
[sources.other.connection]
token = {{ file = "ok.token" }}
base_url = "{vendor_url}"

[sources.off]
adapter = "token-crm"
enabled = false
[sources.off.connection]
token = "inline-secret-value"
base_url = "{vendor_url}"

[[writeback]]
trait = "watch.flag"
source = "other"
object_type = "contacts"
field = "cx_flag"
"""
    )
    return path


def _cli(pm: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stdout + stderr (stdout first, so JSON output starts the text)."""
    code = run(argv, app=create_app(plugin_manager_factory=lambda: pm))
    out = capsys.readouterr()
    return code, out.out + "\n" + out.err


def _json_checks(output: str) -> list[dict[str, Any]]:
    stdout = output[: output.index("\n]") + 2]
    return list(json.loads(stdout))


def test_doctor_reports_failures_without_secrets(
    tmp_path: Path, pm: Any, vendor: Vendor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Traits:
        @hookimpl
        def register_traits(self) -> list[Any]:
            from cxbridge.hooktypes import TraitInfo

            return [TraitInfo("watch.flag", "boolean")]

    pm.register(Traits())
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    monkeypatch.setenv("COLUMNS", "250")
    config = _workspace(tmp_path, vendor.url)

    code, output = _cli(pm, ["--debug", "--config", str(config), "doctor", "--json"], capsys)
    assert code == 1
    assert TOKEN not in output and "good-token-0000" not in output and "inline-secret-value" not in output
    checks = _json_checks(output)
    rows = {(c["subject"], c["check"]): c for c in checks}
    assert rows[("config", "load")]["status"] == "ok"
    assert rows[("store", "open")]["status"] == "ok"
    assert rows[("crm", "connection")]["status"] == "fail"
    assert rows[("crm", "connection")]["detail"] == 'HTTP 401: {"message": "invalid api key ***"}'
    assert rows[("other", "connection")] == {
        "subject": "other",
        "check": "connection",
        "status": "ok",
        "detail": "authenticated with ***",
    }
    assert rows[("other", "fields")]["status"] == "fail" and "cx_flag" in rows[("other", "fields")]["detail"]
    assert rows[("off", "enabled")]["status"] == "skip"
    # the server really saw the secrets: the checks happened
    assert TOKEN in vendor.seen and "good-token-0000" in vendor.seen

    # the table rendering, too
    code, output = _cli(pm, ["--config", str(config), "doctor"], capsys)
    assert code == 1 and "fail" in output and "invalid api key ***" in output and TOKEN not in output


def test_doctor_config_error_is_one_line_naming_the_key(
    tmp_path: Path, pm: Any, vendor: Vendor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _workspace(tmp_path, vendor.url)
    code, output = _cli(pm, ["--config", str(config), "doctor"], capsys)
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "sources.crm.connection.token" in lines[0] and "CRM_TOKEN" in lines[0]


def test_adapter_factory_error_and_cli_traceback_are_redacted(
    tmp_path: Path, pm: Any, vendor: Vendor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    config_path = _workspace(tmp_path, vendor.url, retries=-1)
    # the writeback rule needs the trait; drop it for this test
    config_path.write_text(config_path.read_text().split("[[writeback]]")[0])
    code, output = _cli(pm, ["--config", str(config_path), "doctor", "--json"], capsys)
    assert code == 1
    checks = _json_checks(output)
    failed = [c for c in checks if c["check"] == "build adapter"]
    assert failed and failed[0]["detail"] == "RuntimeError: cannot build with token ***"
    assert TOKEN not in output

    registry.add(TOKEN)
    code, output = _cli(pm, ["--debug", "boom"], capsys)
    assert code == 1
    assert "Traceback" in output and "could not connect using ***" in output and TOKEN not in output
    try:
        raise RuntimeError(f"oops {TOKEN}")
    except RuntimeError as exc:
        assert TOKEN not in format_exception(exc, debug=True) and TOKEN not in format_exception(exc)


def test_config_show_masks_secrets(
    tmp_path: Path, pm: Any, vendor: Vendor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    path = _workspace(tmp_path, vendor.url)
    path.write_text(path.read_text().split("[[writeback]]")[0])
    code, output = _cli(pm, ["--config", str(path), "config", "show"], capsys)
    assert code == 0
    shown = json.loads(output)
    assert shown["sources"]["crm"]["connection"]["base_url"] == vendor.url
    assert shown["sources"]["crm"]["connection"]["token"] == MASK
    for secret in (TOKEN, "good-token-0000", "inline-secret-value"):
        assert secret not in output
    assert load_config(path, pm=pm).source_secrets("off") == ["inline-secret-value"]
