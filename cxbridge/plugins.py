"""The plugin manager: built by a function, never at import time.

:func:`get_plugin_manager` builds a fresh :class:`pluggy.PluginManager` on every call:

1. the hook specifications of :mod:`cxbridge.hookspecs` are added;
2. the built-in plugins named in :data:`DEFAULT_PLUGINS` are imported and registered (a broken built-in is
   a bug in cxbridge and raises);
3. the entry points of the ``cxbridge`` group are loaded **one at a time**: a plugin that fails to import or
   to register (a hook implementation with arguments the hook does not have) is skipped with one warning
   naming its distribution, recorded in :attr:`CxbridgePluginManager.load_failures` (shown by
   ``cxbridge plugins list``), and the rest loads;
4. hook implementations that match no hook (a misspelled name) are an error naming the plugin and its
   distribution (pluggy's ``check_pending``).

Environment variables:

``CXBRIDGE_LOAD_PLUGINS``
    Comma-separated allow-list of entry-point names or distribution names; only those load. Set but empty:
    no entry-point plugin loads. Unset: all load.
``CXBRIDGE_DISABLE_PLUGINS``
    Comma-separated deny-list (entry-point names, distribution names, or built-in module paths).
``CXBRIDGE_TRACE_PLUGINS``
    ``1`` traces every hook call to the ``cxbridge.plugins`` logger at DEBUG level.

Plugins raising inside lifecycle hooks are isolated with :func:`call_isolated`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import (
    collect_adapters,
    collect_commands,
    collect_jobs,
    collect_routes,
    collect_settings,
    collect_traits,
    describe_plugin,
    plugin_distribution,
)

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRYPOINT_GROUP",
    "CxbridgePluginManager",
    "LoadFailure",
    "PluginFailure",
    "PluginInfo",
    "call_isolated",
    "collect_adapters",
    "collect_commands",
    "collect_jobs",
    "collect_routes",
    "collect_settings",
    "collect_traits",
    "describe_plugin",
    "get_plugin_manager",
    "load_failures",
    "plugin_distribution",
    "plugin_info",
]

logger = logging.getLogger("cxbridge.plugins")

ENTRYPOINT_GROUP = "cxbridge"

#: Built-in behaviour, registered as plugins before any entry point (module paths). Overridable defaults use
#: ``trylast=True``. Adding a built-in is one line here.
DEFAULT_PLUGINS: tuple[str, ...] = ("cxbridge.identity.default",)

_FALSE = {"", "0", "false", "no", "off"}


# --------------------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadFailure:
    """An entry-point plugin that could not be loaded or registered (it was skipped)."""

    name: str
    distribution: str | None
    version: str | None
    error: str
    traceback: str = ""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin raised inside a hook; the caller went on without its result.

    :param plugin: the plugin's registered name.
    :param distribution: its distribution, when it came from one.
    :param hook: the hook name.
    :param error: the exception.
    :param traceback: the formatted traceback.
    """

    plugin: str
    distribution: str | None
    hook: str
    error: BaseException
    traceback: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} failed in {self.hook}: {type(self.error).__name__}: {self.error}"


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin, as ``cxbridge plugins list`` shows it.

    :param kind: ``builtin`` (DEFAULT_PLUGINS), ``entrypoint`` or ``registered`` (by code, e.g. tests).
    """

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    kind: str = "registered"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
            "kind": self.kind,
        }


class _DistInfo:
    """What :meth:`pluggy.PluginManager.list_plugin_distinfo` returns: a distribution with ``project_name``."""

    def __init__(self, dist: importlib.metadata.Distribution) -> None:
        self._dist = dist

    @property
    def project_name(self) -> str:
        return str(self._dist.metadata["Name"])

    @property
    def version(self) -> str:
        return self._dist.version

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dist, name)


class CxbridgePluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that remembers built-ins, distributions and load failures."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.load_failures: list[LoadFailure] = []
        self.builtin_plugins: list[object] = []
        self._entrypoint_dists: list[tuple[object, _DistInfo]] = []

    def list_plugin_distinfo(self) -> list[tuple[Any, Any]]:
        """``(plugin, distribution)`` pairs of every plugin loaded from an entry point."""
        return [*super().list_plugin_distinfo(), *self._entrypoint_dists]

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        removed = super().unregister(plugin=plugin, name=name)
        self._entrypoint_dists = [(p, d) for p, d in self._entrypoint_dists if p is not removed]
        self.builtin_plugins = [p for p in self.builtin_plugins if p is not removed]
        return removed


# --------------------------------------------------------------------------------------------------------------
# Building the manager
# --------------------------------------------------------------------------------------------------------------


def _normalize(name: str) -> str:
    """PEP 503 normalisation, so ``cxbridge_hello`` matches ``cxbridge-hello``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_set(value: str) -> set[str]:
    return {_normalize(part.strip()) for part in value.split(",") if part.strip()}


def _selected(names: Sequence[str], allow: set[str] | None, deny: set[str]) -> bool:
    keys = {_normalize(n) for n in names if n}
    if keys & deny:
        return False
    return allow is None or bool(keys & allow)


def get_plugin_manager(*, load_entrypoints: bool = True) -> CxbridgePluginManager:
    """Build a new plugin manager with the hook specs, the built-in plugins and the installed plugins.

    Args:
        load_entrypoints: load the ``cxbridge`` entry points (``False`` gives an isolated manager holding only
            the built-ins, as the test kit's ``plugin_manager`` fixture does).

    Returns:
        A fresh manager; nothing is cached between calls.

    Raises:
        PluginError: a built-in plugin cannot be imported, or a plugin implements a hook that does not exist.
    """
    pm = CxbridgePluginManager()
    pm.add_hookspecs(hookspecs)

    deny = _name_set(os.environ.get("CXBRIDGE_DISABLE_PLUGINS", ""))
    allow_env = os.environ.get("CXBRIDGE_LOAD_PLUGINS")
    allow = None if allow_env is None else _name_set(allow_env)

    if os.environ.get("CXBRIDGE_TRACE_PLUGINS", "").strip().lower() not in _FALSE:
        pm.trace.root.setwriter(lambda message: logger.debug("%s", message.rstrip("\n")))
        pm.enable_tracing()

    for module_path in DEFAULT_PLUGINS:
        if _normalize(module_path) in deny:
            logger.info("built-in plugin %s disabled by CXBRIDGE_DISABLE_PLUGINS", module_path)
            continue
        try:
            module = importlib.import_module(module_path)
            pm.register(module, name=module_path)
        except Exception as exc:
            raise PluginError(
                f"built-in plugin {module_path} cannot be loaded: {exc}", distribution="cxbridge"
            ) from exc
        pm.builtin_plugins.append(module)

    if load_entrypoints:
        _load_entrypoints(pm, allow=allow, deny=deny)
    check_hooks(pm)
    return pm


def _load_entrypoints(pm: CxbridgePluginManager, *, allow: set[str] | None, deny: set[str]) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRYPOINT_GROUP):
        dist = ep.dist
        dist_name = str(dist.metadata["Name"]) if dist is not None else None
        version = dist.version if dist is not None else None
        if not _selected([ep.name, dist_name or ""], allow, deny):
            logger.debug(
                "plugin %s (%s) not loaded: excluded by CXBRIDGE_LOAD/DISABLE_PLUGINS", ep.name, dist_name
            )
            continue
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            # The same distribution can be found twice on sys.path (an editable install and a build dir).
            other = pm.get_plugin(ep.name)
            other_dist, _ = plugin_distribution(pm, other) if other is not None else (None, None)
            if (
                other_dist is not None
                and dist_name is not None
                and _normalize(other_dist) == _normalize(dist_name)
            ):
                continue
            _record_failure(
                pm,
                ep.name,
                dist_name,
                version,
                f"the plugin name {ep.name!r} is already taken by distribution {other_dist!r}",
            )
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            _record_failure(
                pm, ep.name, dist_name, version, f"{type(exc).__name__}: {exc}", traceback.format_exc()
            )
            continue
        if dist is not None:
            pm._entrypoint_dists.append((plugin, _DistInfo(dist)))


def _record_failure(
    pm: CxbridgePluginManager, name: str, dist: str | None, version: str | None, error: str, tb: str = ""
) -> None:
    logger.warning(
        "plugin %r from distribution %s %s could not be loaded and is skipped: %s",
        name,
        dist or "<unknown>",
        version or "",
        error,
    )
    pm.load_failures.append(LoadFailure(name=name, distribution=dist, version=version, error=error, traceback=tb))


def check_hooks(pm: pluggy.PluginManager) -> None:
    """Fail if a registered plugin implements a hook that does not exist (usually a typo).

    Raises:
        PluginError: naming the plugin, its distribution, the hook and the closest real hook name.
    """
    import difflib

    callers = {name: c for name, c in vars(pm.hook).items() if isinstance(c, pluggy.HookCaller)}
    known = [name for name, c in callers.items() if c.has_spec()]
    problems: list[str] = []
    first_dist: str | None = None
    for name, caller in sorted(callers.items()):
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            dist, _ = plugin_distribution(pm, impl.plugin)
            first_dist = first_dist or dist
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{describe_plugin(pm, impl.plugin)} implements unknown hook {name!r}{hint}")
    if problems:
        raise PluginError(
            "; ".join(problems) + " -- fix the plugin or disable it with CXBRIDGE_DISABLE_PLUGINS=<name>",
            distribution=first_dist,
        )
    try:  # pluggy's own check, in case it learns more than the loop above knows
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        dist, _ = plugin_distribution(pm, exc.plugin)
        raise PluginError(f"{describe_plugin(pm, exc.plugin)}: {exc}", distribution=dist) from exc


def load_failures(pm: pluggy.PluginManager) -> list[LoadFailure]:
    """The entry-point plugins that were skipped because they failed to load."""
    return list(getattr(pm, "load_failures", []))


def plugin_info(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Every registered plugin with its distribution, version and the hooks it implements, sorted by name."""
    builtins = getattr(pm, "builtin_plugins", [])
    entrypoint_plugins = [p for p, _ in pm.list_plugin_distinfo()]
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        dist, version = plugin_distribution(pm, plugin)
        hooks = tuple(sorted(caller.name for caller in (pm.get_hookcallers(plugin) or [])))
        kind = (
            "builtin"
            if any(plugin is b for b in builtins)
            else "entrypoint"
            if any(plugin is p for p in entrypoint_plugins)
            else "registered"
        )
        infos.append(PluginInfo(name=name, distribution=dist, version=version, hooks=hooks, kind=kind))
    return sorted(infos, key=lambda i: i.name)


# --------------------------------------------------------------------------------------------------------------
# Isolated hook calls
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Call:
    results: list[Any] = field(default_factory=list)


def call_isolated(
    pm: pluggy.PluginManager,
    hook_name: str,
    *,
    on_failure: Callable[[PluginFailure], None] | None = None,
    propagate: tuple[type[BaseException], ...] = (),
    **kwargs: Any,
) -> Any:
    """Call a hook one implementation at a time, so a plugin that raises does not stop the others.

    Implementations run in pluggy's order (``tryfirst`` first, ``trylast`` last, otherwise the most recently
    registered first). For a ``firstresult`` hook the call stops at the first non-None result, which is
    returned (or None); otherwise the list of non-None results is returned, like ``pm.hook.<name>(...)``.

    Hook wrappers cannot be isolated one by one; a wrapper implementation is reported as a failure of its
    plugin and skipped.

    Args:
        pm: the plugin manager.
        hook_name: the hook to call.
        on_failure: receives one :class:`PluginFailure` per implementation that raised (the sync engine
            stores them; ``cxbridge status`` and metrics show them). Without it, failures are logged.
        propagate: exception types that are re-raised instead of isolated (``RecordError`` in a caller that
            quarantines records itself). ``KeyboardInterrupt`` and ``SystemExit`` always propagate.
        **kwargs: the hook arguments, by name (all of them; each implementation gets the subset it asks for).

    Raises:
        TypeError: ``hook_name`` is not a known hook, or an argument is missing.
    """
    caller = getattr(pm.hook, hook_name, None)
    if not isinstance(caller, pluggy.HookCaller) or caller.spec is None:
        raise TypeError(f"unknown hook {hook_name!r}")
    missing = [name for name in caller.spec.argnames if name not in kwargs]
    if missing:
        raise TypeError(f"{hook_name}() missing arguments: {', '.join(missing)}")
    firstresult = bool(caller.spec.opts.get("firstresult"))
    tracing = logger.isEnabledFor(logging.DEBUG)
    call = _Call()

    def fail(impl: pluggy.HookImpl, exc: BaseException, tb: str) -> None:
        dist, _ = plugin_distribution(pm, impl.plugin)
        failure = PluginFailure(
            plugin=impl.plugin_name, distribution=dist, hook=hook_name, error=exc, traceback=tb
        )
        if on_failure is None:
            logger.warning("%s", failure)
        else:
            on_failure(failure)

    for impl in reversed(caller.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            fail(impl, PluginError(f"hook wrappers are not supported on isolated hook {hook_name}"), "")
            continue
        if tracing:
            logger.debug("calling %s from plugin %s", hook_name, impl.plugin_name)
        try:
            result = impl.function(*(kwargs[name] for name in impl.argnames))
        except propagate:
            raise
        except Exception as exc:
            fail(impl, exc, traceback.format_exc())
            continue
        if result is not None:
            if firstresult:
                return result
            call.results.append(result)
    return None if firstresult else call.results
