"""The ``cxbridge`` typer app: global options, built-in command modules, plugin commands.

Adding a built-in command
    Write a module in ``cxbridge/cli/`` with a function ``register(app: typer.Typer) -> None`` that adds its
    commands (``app.command("doctor")(doctor)``) or groups (``app.add_typer(db_app, name="db")``), and add the
    module path to :data:`BUILTIN_COMMANDS`. Keep the module's top level light (typer, stdlib): import
    sqlalchemy, httpx, pydantic models... inside the command functions, because every built-in module is
    imported for ``cxbridge --help``, which must start in under 0.5 s. Use
    :func:`cxbridge.cli.context.get_state` for ``--config``, ``--debug``, the plugin manager and the config.

Plugin commands
    Come from the ``register_commands`` hook (:class:`~cxbridge.hooktypes.CommandInfo`), collected only when
    needed: when the command line names a command that is not built in, or when help lists the commands.
    ``cxbridge version`` or ``cxbridge hooks`` never load a plugin. A plugin command named like a built-in
    is a :class:`~cxbridge.errors.PluginError`.

Errors
    Commands raise :class:`~cxbridge.errors.CxbridgeError` subclasses; :func:`cxbridge.cli.runner.run`
    prints them as one line (exit 2 for configuration errors, 1 otherwise).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from .context import CliState

if TYPE_CHECKING:
    import pluggy

__all__ = ["BUILTIN_COMMANDS", "PluginGroup", "create_app"]

#: Modules holding built-in commands, each with ``register(app: typer.Typer) -> None``, in help order.
BUILTIN_COMMANDS: tuple[str, ...] = (
    "cxbridge.cli.demo_cmd",
    "cxbridge.cli.sync_cmds",
    "cxbridge.cli.customer_cmds",
    "cxbridge.cli.outbox_cmds",
    "cxbridge.cli.forget_cmds",
    "cxbridge.cli.store_cmds",
    "cxbridge.cli.version_cmd",
    "cxbridge.cli.config_cmds",
    "cxbridge.cli.plugins_cmd",
    "cxbridge.cli.hooks_cmd",
    "cxbridge.cli.web_cmd",
)


class PluginGroup(TyperGroup):
    """The root command group: built-in commands eagerly, plugin commands on first need."""

    #: Builds the plugin manager; replaced per app by :func:`create_app`.
    plugin_manager_factory: Callable[[], pluggy.PluginManager] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pm: pluggy.PluginManager | None = None
        self._plugin_commands: dict[str, Any] | None = None

    def plugin_manager(self) -> pluggy.PluginManager:
        """The plugin manager of this run, built once."""
        if self._pm is None:
            factory = type(self).plugin_manager_factory
            if factory is None:
                from ..plugins import get_plugin_manager

                factory = get_plugin_manager
            self._pm = factory()
        return self._pm

    def plugin_commands(self) -> dict[str, Any]:
        """Plugin command name -> click command, collected from ``register_commands`` once."""
        if self._plugin_commands is None:
            from ..plugins import collect_commands

            infos = collect_commands(self.plugin_manager(), builtin=list(self.commands))
            commands: dict[str, Any] = {}
            for name, info in infos.items():
                command = typer.main.get_command(info.app)
                command.name = name
                if info.help:
                    command.short_help = info.help
                    command.help = command.help or info.help
                commands[name] = command
            self._plugin_commands = commands
        return self._plugin_commands

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *sorted(self.plugin_commands())]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        builtin = self.commands.get(cmd_name)
        if builtin is not None:
            return builtin
        return self.plugin_commands().get(cmd_name)


def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        envvar="CXBRIDGE_CONFIG",
        help="Configuration file (default: ./cxbridge.toml).",
        dir_okay=False,
    ),
    debug: bool = typer.Option(False, "--debug", help="Verbose logging and full tracebacks on errors."),
) -> None:
    """cxbridge: customer-experience features for the CRMs you already run."""
    ctx.obj = CliState(config_option=config, debug=debug, root=ctx.command)


def create_app(*, plugin_manager_factory: Callable[[], pluggy.PluginManager] | None = None) -> typer.Typer:
    """Build the CLI app.

    Args:
        plugin_manager_factory: builds the plugin manager (default
            :func:`cxbridge.plugins.get_plugin_manager`); tests pass an isolated one.
    """
    group_cls = type("CxbridgeGroup", (PluginGroup,), {"plugin_manager_factory": plugin_manager_factory})
    app = typer.Typer(
        cls=group_cls,
        name="cxbridge",
        help="cxbridge: customer-experience features for the CRMs you already run.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain help: typer's rich help costs ~130 ms of imports; `cxbridge --help` must start in < 0.5 s.
        rich_markup_mode=None,
    )
    app.callback()(_root)
    for module_path in BUILTIN_COMMANDS:
        module = importlib.import_module(module_path)
        module.register(app)
    return app
