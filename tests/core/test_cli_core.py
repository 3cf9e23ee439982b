"""The CLI skeleton: global options, one-line errors, plugin commands, plugins list, version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cxbridge import __version__, hookimpl
from cxbridge.cli import main
from cxbridge.cli.app import BUILTIN_COMMANDS, create_app
from cxbridge.cli.context import get_state
from cxbridge.cli.runner import run
from cxbridge.errors import ConfigError, NotFound
from cxbridge.hooktypes import CommandInfo
from cxbridge.plugins import get_plugin_manager

CXBRIDGE = Path(sys.executable).parent / "cxbridge"


def _command_plugin(name: str, app: typer.Typer) -> types.ModuleType:
    plugin = types.ModuleType(f"{name}_plugin")

    @hookimpl
    def register_commands():
        return [CommandInfo(name=name, app=app, help=f"{name} things")]

    plugin.register_commands = register_commands  # type: ignore[attr-defined]
    return plugin


def _app_with(*plugins: types.ModuleType) -> typer.Typer:
    def factory():
        pm = get_plugin_manager(load_entrypoints=False)
        for plugin in plugins:
            pm.register(plugin)
        return pm

    return create_app(plugin_manager_factory=factory)


def _failing_app(exc: Exception) -> typer.Typer:
    sub = typer.Typer()

    @sub.command()
    def go() -> None:
        raise exc

    return _app_with(_command_plugin("boom", sub))


def test_every_builtin_module_registers_commands():
    app = create_app()
    names = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert {"version", "hooks", "plugins"} <= names
    assert len(BUILTIN_COMMANDS) == len(set(BUILTIN_COMMANDS))


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith(f"cxbridge {__version__} (Python ")


def test_builtin_commands_do_not_load_plugins(capsys):
    app = create_app(plugin_manager_factory=lambda: pytest.fail("plugins loaded"))
    assert run(["version"], app=app) == 0


def test_plugin_command_runs_and_gets_global_options(capsys, tmp_path):
    seen = {}
    sub = typer.Typer()

    @sub.command()
    def show(ctx: typer.Context, who: str = "x") -> None:
        state = get_state(ctx)
        seen.update(config=state.config_path, debug=state.debug, pm=state.plugin_manager())
        typer.echo(f"hi {who}")

    app = _app_with(_command_plugin("greet", sub))
    assert run(["--config", str(tmp_path / "x.toml"), "greet", "--who", "Ann"], app=app) == 0
    assert capsys.readouterr().out == "hi Ann\n"
    assert seen["config"] == tmp_path / "x.toml"
    assert seen["debug"] is False
    assert seen["pm"].has_plugin("greet_plugin")


def test_config_path_defaults_to_env_then_cwd_file(monkeypatch, tmp_path):
    seen = []
    sub = typer.Typer()

    @sub.command()
    def where(ctx: typer.Context) -> None:
        seen.append(get_state(ctx).config_path)

    app = _app_with(_command_plugin("where", sub))
    monkeypatch.delenv("CXBRIDGE_CONFIG", raising=False)
    assert run(["where"], app=app) == 0
    monkeypatch.setenv("CXBRIDGE_CONFIG", str(tmp_path / "env.toml"))
    assert run(["where"], app=app) == 0
    assert seen == [Path("cxbridge.toml"), tmp_path / "env.toml"]


def test_help_lists_builtin_and_plugin_commands(capsys):
    sub = typer.Typer()

    @sub.command()
    def x() -> None:
        pass

    assert run(["--help"], app=_app_with(_command_plugin("extra", sub))) == 0
    out = capsys.readouterr().out
    for name in ("version", "hooks", "plugins", "extra"):
        assert f"  {name} " in out
    assert "extra things" in out
    assert "--config" in out and "--debug" in out


def test_cxbridge_error_is_one_red_line_without_traceback(capsys):
    assert run(["boom"], app=_failing_app(NotFound("no customer 'c9'"))) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: no customer 'c9'"]
    assert "Traceback" not in err


def test_config_error_exits_2(capsys):
    assert run(["boom"], app=_failing_app(ConfigError("expected a number", key="sync.lookback_seconds"))) == 2
    assert capsys.readouterr().err.strip() == "error: config error at sync.lookback_seconds: expected a number"


def test_unexpected_error_names_its_type_and_suggests_debug(capsys):
    assert run(["boom"], app=_failing_app(KeyError("missing"))) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unexpected KeyError: 'missing' (run with --debug for the traceback)"]


def test_debug_adds_the_traceback(capsys):
    assert run(["--debug", "boom"], app=_failing_app(NotFound("gone"))) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "raise exc" in err
    assert err.strip().splitlines()[-1] == "error: gone"


def test_plugin_command_clashing_with_builtin_is_a_plugin_error(capsys):
    sub = typer.Typer()

    @sub.command()
    def x() -> None:
        pass

    assert run(["--help"], app=_app_with(_command_plugin("hooks", sub))) == 1
    assert "clashes with a built-in command" in capsys.readouterr().err


def test_usage_error_exits_2(capsys):
    assert run(["no-such-command"], app=_app_with()) == 2
    assert "No such command" in capsys.readouterr().err


def test_plugins_list_json_shows_plugins_and_load_failures(monkeypatch, make_dist):
    make_dist(
        "cxbridge-broken",
        modules={"broken_cli_plugin.py": "raise RuntimeError('nope')\n"},
        entry_points={"broken-cli": "broken_cli_plugin"},
    )
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello,broken-cli")
    result = CliRunner().invoke(create_app(), ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    hello = next(p for p in data["plugins"] if p["name"] == "hello")
    assert hello == {
        "name": "hello",
        "distribution": "cxbridge-hello",
        "version": "0.1.0",
        "hooks": ["customers_changed", "register_commands", "register_traits"],
        "kind": "entrypoint",
    }
    assert data["failures"] == [
        {"name": "broken-cli", "distribution": "cxbridge-broken", "version": "1.0", "error": "RuntimeError: nope"}
    ]


def test_plugins_list_table(monkeypatch):
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello")
    result = CliRunner().invoke(create_app(), ["plugins", "list"])
    assert result.exit_code == 0, result.output
    assert "cxbridge-hello" in result.output and "register_traits" in result.output


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXBRIDGE_")}
    env.update(extra)
    return env


def test_console_script_runs_the_example_plugin_command(tmp_path):
    proc = subprocess.run(
        [str(CXBRIDGE), "hello", "--name", "Ann"],
        capture_output=True,
        text=True,
        env=_env(CXBRIDGE_LOAD_PLUGINS="hello"),
        cwd=tmp_path,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (0, "Hello, Ann!\n"), proc.stderr


def test_console_script_error_contract(tmp_path):
    proc = subprocess.run(
        [str(CXBRIDGE), "hello", "--bogus"],
        capture_output=True,
        text=True,
        env=_env(CXBRIDGE_LOAD_PLUGINS="hello"),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "No such option" in proc.stderr


def test_misspelled_hook_makes_plugin_commands_fail_with_one_line(monkeypatch, make_dist, capsys):
    typo = "from cxbridge import hookimpl\n\n@hookimpl\ndef register_command():\n    return []\n"
    make_dist(
        "cxbridge-typo-cli", modules={"typo_cli_plugin.py": typo}, entry_points={"typo-cli": "typo_cli_plugin"}
    )
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "typo-cli")
    assert run(["plugins", "list"], app=create_app()) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: distribution 'cxbridge-typo-cli' (plugin 'typo-cli') implements unknown hook")
    assert "did you mean 'register_commands'" in line
    assert "CXBRIDGE_DISABLE_PLUGINS" in line
