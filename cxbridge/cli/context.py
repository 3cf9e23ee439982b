"""The state shared by every command: global options, the plugin manager and the configuration, all lazy.

Commands get it with :func:`get_state`::

    @app.command()
    def status(ctx: typer.Context) -> None:
        state = get_state(ctx)
        config = state.load_config()          # imports cxbridge.config only now
        pm = state.plugin_manager()           # the same manager plugin commands were collected from
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy
    import typer

__all__ = ["DEFAULT_CONFIG", "CliState", "get_state"]

#: Used when neither ``--config`` nor ``CXBRIDGE_CONFIG`` is given.
DEFAULT_CONFIG = Path("cxbridge.toml")


@dataclass
class CliState:
    """Global options and lazily built shared objects.

    :param config_option: ``--config`` (or ``CXBRIDGE_CONFIG``), None when not given.
    :param debug: ``--debug``: DEBUG logging and tracebacks on errors.
    """

    config_option: Path | None = None
    debug: bool = False
    root: Any = None
    _config: Any = field(default=None, repr=False)
    _pm: Any = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        """The configuration file: ``--config``, else ``$CXBRIDGE_CONFIG``, else ``./cxbridge.toml``."""
        if self.config_option is not None:
            return self.config_option
        env = os.environ.get("CXBRIDGE_CONFIG")
        return Path(env) if env else DEFAULT_CONFIG

    def plugin_manager(self) -> pluggy.PluginManager:
        """The plugin manager of this CLI run (built on first use, shared with the plugin commands)."""
        if self.root is not None and hasattr(self.root, "plugin_manager"):
            pm: pluggy.PluginManager = self.root.plugin_manager()
            return pm
        if self._pm is None:
            from ..plugins import get_plugin_manager

            self._pm = get_plugin_manager()
        return self._pm

    def load_config(self) -> Any:
        """Load and validate :attr:`config_path` with :func:`cxbridge.config.load_config` (cached)."""
        if self._config is None:
            from ..config import load_config  # type: ignore[attr-defined,unused-ignore]

            self._config = load_config(self.config_path, pm=self.plugin_manager())
        return self._config


def get_state(ctx: typer.Context) -> CliState:
    """The :class:`CliState` of the running command (a default one when the root callback did not run)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState(root=root.command)
    return root.obj
