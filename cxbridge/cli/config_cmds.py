"""``cxbridge init``, ``cxbridge doctor`` and ``cxbridge config show|schema``.

``doctor`` checks, in order: the configuration, plugin loading, the store, and for every enabled source the
adapter's own :meth:`~cxbridge.adapters.Adapter.check` (connection, and the fields write-back rules need).
Every detail shown passes through :func:`cxbridge.secrets.redact`. Exit code 1 when any check fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .context import get_state

if TYPE_CHECKING:
    import pluggy

    from ..config import Config

__all__ = ["Check", "register", "run_checks"]

config_app = typer.Typer(help="Show the effective configuration or its JSON schema.", no_args_is_help=True)


def init(
    directory: Path = typer.Argument(Path("."), help="Workspace folder (created if missing)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing cxbridge.toml."),
) -> None:
    """Write a commented starter cxbridge.toml."""
    from importlib.resources import files

    from ..config import DEFAULT_CONFIG_NAME
    from ..errors import ConfigError

    target = directory / DEFAULT_CONFIG_NAME
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; use --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    text = files("cxbridge.templates").joinpath("cxbridge.toml").read_text(encoding="utf-8")
    target.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {target}")
    typer.echo("next: add a [sources.<name>] table, then run `cxbridge doctor`")


@dataclass(frozen=True)
class Check:
    """One line of the doctor report."""

    subject: str
    check: str
    ok: bool | None  # None: skipped
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        status = "skip" if self.ok is None else ("ok" if self.ok else "fail")
        return {"subject": self.subject, "check": self.check, "status": status, "detail": self.detail}


def _safe(text: object, secrets: tuple[str, ...] = ()) -> str:
    from ..secrets import redact

    return " ".join(redact(text, secrets).split())


def _error_text(exc: BaseException) -> str:
    from ..errors import CxbridgeError

    if isinstance(exc, CxbridgeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_checks(
    config: Config, pm: pluggy.PluginManager, *, adapter_kwargs: dict[str, Any] | None = None
) -> list[Check]:
    """Everything ``doctor`` checks after the configuration loaded, as :class:`Check` rows (redacted).

    :param adapter_kwargs: extra arguments for :func:`cxbridge.sources.build_adapter` (tests inject a mock
        HTTP transport here).
    """
    from ..sources import build_adapter

    checks: list[Check] = []
    from ..plugins import load_failures

    for failure in load_failures(pm):
        name = getattr(failure, "distribution", None) or getattr(failure, "name", "plugin")
        checks.append(Check(f"plugin {name}", "load", False, _safe(getattr(failure, "error", failure))))

    store = None
    try:
        from ..store import open_store, redact_url
    except ImportError:
        checks.append(Check("store", "open", None, "store module not available in this installation"))
    else:
        try:
            store = open_store(config.store.url)
            checks.append(Check("store", "open", True, _safe(redact_url(config.store.url))))
        except Exception as exc:
            checks.append(Check("store", "open", False, _safe(_error_text(exc))))

    try:
        for name, source in config.sources.items():
            secrets = tuple(config.source_secrets(name))
            if not source.enabled:
                checks.append(Check(name, "enabled", None, "disabled in the configuration"))
                continue
            try:
                adapter = build_adapter(config, name, pm=pm, store=store, **(adapter_kwargs or {}))
            except Exception as exc:
                checks.append(Check(name, "build adapter", False, _safe(_error_text(exc), secrets)))
                continue
            try:
                if config.writeback_for(name) and "write" not in adapter.capabilities:
                    checks.append(
                        Check(
                            name,
                            "write-back",
                            False,
                            f"adapter {source.adapter!r} cannot write, but rules target it",
                        )
                    )
                for result in adapter.check(config.required_fields(name)):
                    checks.append(Check(name, result.name, result.ok, _safe(result.detail, secrets)))
            except Exception as exc:
                checks.append(Check(name, "connection", False, _safe(_error_text(exc), secrets)))
            finally:
                try:
                    adapter.close()
                except Exception as exc:  # a failing close must not hide the checks' outcome
                    checks.append(Check(name, "close", False, _safe(_error_text(exc), secrets)))
    finally:
        if store is not None:
            store.close()
    return checks


def doctor(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Validate the configuration and test the store and each source's connection."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..config import load_config

    state = get_state(ctx)
    pm = state.plugin_manager()
    config = load_config(state.config_path, pm=pm)  # a ConfigError prints as one line naming the key
    checks = [Check("config", "load", True, str(config.path)), *run_checks(config, pm)]
    failed = any(c.ok is False for c in checks)
    if as_json:
        typer.echo(json.dumps([c.to_json() for c in checks], indent=2))
    else:
        table = Table(title="cxbridge doctor")
        for column in ("source", "check", "status", "detail"):
            table.add_column(column, overflow="fold")
        marks = {True: "[green]ok[/]", False: "[bold red]fail[/]", None: "[yellow]skip[/]"}
        for c in checks:
            table.add_row(escape(c.subject), escape(c.check), marks[c.ok], escape(c.detail))
        Console(soft_wrap=False).print(table)
    if failed:
        raise typer.Exit(1)


@config_app.command("show")
def show(ctx: typer.Context) -> None:
    """Print the effective configuration (environment overrides applied, secrets masked) as JSON."""
    from ..config import load_config
    from ..secrets import redact

    state = get_state(ctx)
    config = load_config(state.config_path, pm=state.plugin_manager())
    data = config.model_dump(mode="json")
    data["store"]["url"] = redact(config.store.url)
    typer.echo(redact(json.dumps(data, indent=2, default=str)))


@config_app.command("schema")
def schema() -> None:
    """Print the JSON schema of the framework's keys (adapters and plugins document their own tables)."""
    from ..config import Config

    typer.echo(json.dumps(Config.model_json_schema(), indent=2))


def register(app: typer.Typer) -> None:
    """Add ``init``, ``doctor`` and ``config`` to the CLI."""
    app.command("init")(init)
    app.command("doctor")(doctor)
    app.add_typer(config_app, name="config")
