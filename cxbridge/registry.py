"""Collect, validate and de-duplicate what plugins register (``register_*`` hooks).

Each collector calls one registration hook implementation at a time, so every record is known to come from
one plugin, checks the type and the name of every record, and fails on a duplicate name with a
:class:`~cxbridge.errors.PluginError` naming *both* distributions (conda's ``get_hook_results`` does the
same). A registration hook that raises fails the collection: registration happens at start, where a clear
error beats a half-working daemon.

The collectors are re-exported by :mod:`cxbridge.plugins`, which is where callers import them from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from .errors import PluginError

if TYPE_CHECKING:
    from .adapters import AdapterInfo
    from .hooktypes import CommandInfo, JobInfo, RouteInfo, SettingsInfo, TraitInfo

__all__ = [
    "ADAPTER_NAME_RE",
    "COMMAND_NAME_RE",
    "JOB_NAME_RE",
    "SETTINGS_NAMESPACE_RE",
    "TRAIT_NAME_RE",
    "collect_adapters",
    "collect_commands",
    "collect_jobs",
    "collect_routes",
    "collect_settings",
    "collect_traits",
    "describe_plugin",
    "plugin_distribution",
]

#: ``local-sql``, ``hubspot``: lowercase words joined by single dashes.
ADAPTER_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
#: CLI sub-command names follow the adapter rule.
COMMAND_NAME_RE = ADAPTER_NAME_RE
#: ``segments.tier``, ``nps.score``: a namespace and at least one more dotted part.
TRAIT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
#: ``[plugins.<namespace>]``.
SETTINGS_NAMESPACE_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
#: ``segments.refit``: lowercase parts, dotted (a namespace is recommended, not required).
JOB_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$")

_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------------------
# Plugin -> distribution
# --------------------------------------------------------------------------------------------------------------


def plugin_distribution(pm: pluggy.PluginManager, plugin: object) -> tuple[str | None, str | None]:
    """The ``(distribution name, version)`` a registered plugin object was loaded from, or ``(None, None)``.

    Built-in plugins (``DEFAULT_PLUGINS``) belong to the ``cxbridge`` distribution itself.
    """
    for registered, dist in pm.list_plugin_distinfo():
        if registered is plugin:
            return getattr(dist, "project_name", None), getattr(dist, "version", None)
    if plugin in getattr(pm, "builtin_plugins", ()):
        from . import __version__

        return "cxbridge", __version__
    return None, None


def describe_plugin(pm: pluggy.PluginManager, plugin: object) -> str:
    """A human label for error messages: ``distribution 'cxbridge-hello' (plugin 'hello')``."""
    name = pm.get_name(plugin) or repr(plugin)
    dist, _ = plugin_distribution(pm, plugin)
    if dist is None:
        return f"plugin {name!r} (not from an installed distribution)"
    if dist == "cxbridge" and plugin in getattr(pm, "builtin_plugins", ()):
        return f"built-in plugin {name!r}"
    return f"distribution {dist!r} (plugin {name!r})"


# --------------------------------------------------------------------------------------------------------------
# Generic collection
# --------------------------------------------------------------------------------------------------------------


def _results(pm: pluggy.PluginManager, hook_name: str, expected: type[T]) -> Iterator[tuple[object, T]]:
    """Yield ``(plugin, record)`` for every record every implementation of ``hook_name`` returned."""
    hook = getattr(pm.hook, hook_name)
    # pluggy calls the last registered implementation first (tryfirst/trylast aside); keep that order.
    for impl in reversed(hook.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        who = describe_plugin(pm, impl.plugin)
        dist, _ = plugin_distribution(pm, impl.plugin)
        try:
            result = impl.function()
        except Exception as exc:
            raise PluginError(
                f"{who} failed in {hook_name}: {type(exc).__name__}: {exc}", distribution=dist
            ) from exc
        if result is None:
            continue
        if isinstance(result, expected):
            items: list[Any] = [result]
        elif isinstance(result, Iterable) and not isinstance(result, str | bytes):
            try:
                items = list(result)
            except Exception as exc:
                raise PluginError(
                    f"{who} failed in {hook_name}: {type(exc).__name__}: {exc}", distribution=dist
                ) from exc
        else:
            raise PluginError(
                f"{who}: {hook_name} must return a list of {expected.__name__}, got {type(result).__name__}",
                distribution=dist,
            )
        for item in items:
            if not isinstance(item, expected):
                raise PluginError(
                    f"{who}: {hook_name} returned {type(item).__name__}, expected {expected.__name__}",
                    distribution=dist,
                )
            yield impl.plugin, item


def _collect(
    pm: pluggy.PluginManager,
    hook_name: str,
    expected: type[T],
    *,
    what: str,
    key: Callable[[T], str],
    validate: Callable[[T], str | None],
    reserved: Iterable[str] = (),
) -> dict[str, T]:
    found: dict[str, T] = {}
    owner: dict[str, object] = {}
    reserved_names = set(reserved)
    for plugin, item in _results(pm, hook_name, expected):
        name = key(item)
        dist, _ = plugin_distribution(pm, plugin)
        problem = validate(item)
        if problem:
            raise PluginError(
                f"{describe_plugin(pm, plugin)}: invalid {what} {name!r}: {problem}", distribution=dist
            )
        if name in reserved_names:
            raise PluginError(
                f"{describe_plugin(pm, plugin)}: {what} {name!r} clashes with a built-in {what}", distribution=dist
            )
        if name in found:
            first = describe_plugin(pm, owner[name])
            raise PluginError(
                f"duplicate {what} {name!r}: registered by {first} and by {describe_plugin(pm, plugin)}",
                distribution=dist,
            )
        found[name] = item
        owner[name] = plugin
    return found


def _match(pattern: re.Pattern[str], value: object, rule: str) -> str | None:
    if not isinstance(value, str) or not pattern.match(value):
        return f"name must be {rule}"
    return None


# --------------------------------------------------------------------------------------------------------------
# Collectors
# --------------------------------------------------------------------------------------------------------------


def collect_adapters(pm: pluggy.PluginManager) -> dict[str, AdapterInfo]:
    """Adapters by name, from ``register_adapters``.

    Raises:
        PluginError: a name is invalid (lowercase words joined by dashes) or registered twice, the config
            model is not a pydantic model, or the factory is not callable.
    """
    from pydantic import BaseModel

    from .adapters import AdapterInfo

    def validate(info: AdapterInfo) -> str | None:
        problem = _match(ADAPTER_NAME_RE, info.name, "lowercase words joined by dashes (local-sql)")
        if problem:
            return problem
        if not (isinstance(info.config_model, type) and issubclass(info.config_model, BaseModel)):
            return "config_model must be a pydantic BaseModel subclass"
        if not callable(info.factory):
            return "factory must be callable"
        return None

    return _collect(pm, "register_adapters", AdapterInfo, what="adapter", key=lambda i: i.name, validate=validate)


def collect_commands(pm: pluggy.PluginManager, *, builtin: Iterable[str] = ()) -> dict[str, CommandInfo]:
    """CLI command groups by name, from ``register_commands``.

    Args:
        pm: the plugin manager.
        builtin: names of built-in commands; a plugin command with one of these names is an error.
    """
    import typer

    from .hooktypes import CommandInfo

    def validate(info: CommandInfo) -> str | None:
        problem = _match(COMMAND_NAME_RE, info.name, "lowercase words joined by dashes")
        if problem:
            return problem
        if not isinstance(info.app, typer.Typer):
            return f"app must be a typer.Typer, got {type(info.app).__name__}"
        return None

    return _collect(
        pm,
        "register_commands",
        CommandInfo,
        what="command",
        key=lambda i: i.name,
        validate=validate,
        reserved=builtin,
    )


def route_key(info: RouteInfo) -> str:
    """The unique key of a route: its name, or its path when it has none."""
    return info.name or info.path


def collect_routes(pm: pluggy.PluginManager, *, reserved_paths: Iterable[str] = ()) -> dict[str, RouteInfo]:
    """Web routes by name (or path when unnamed), from ``register_routes``.

    Besides names, two routes may not serve the same method on the same path, and no route may take a
    reserved path (``/health``, ``/metrics``).
    """
    from .hooktypes import RouteInfo

    reserved = set(reserved_paths)

    def validate(info: RouteInfo) -> str | None:
        if not isinstance(info.path, str) or not info.path.startswith("/"):
            return "path must start with '/'"
        if info.path in reserved:
            return f"path {info.path} is reserved by cxbridge"
        if not callable(info.endpoint):
            return "endpoint must be callable"
        bad = [m for m in info.methods if m not in _HTTP_METHODS]
        if bad or not info.methods:
            return f"methods must be among {sorted(_HTTP_METHODS)}, got {list(info.methods)}"
        return None

    routes = _collect(pm, "register_routes", RouteInfo, what="route", key=route_key, validate=validate)
    seen: dict[tuple[str, str], str] = {}
    for key, info in routes.items():
        for method in info.methods:
            other = seen.get((info.path, method))
            if other is not None:
                raise PluginError(f"routes {other!r} and {key!r} both serve {method} {info.path}")
            seen[(info.path, method)] = key
    return routes


def collect_settings(pm: pluggy.PluginManager) -> dict[str, SettingsInfo]:
    """Plugin settings models by namespace (``[plugins.<namespace>]``), from ``register_settings``."""
    from pydantic import BaseModel

    from .hooktypes import SettingsInfo

    def validate(info: SettingsInfo) -> str | None:
        problem = _match(SETTINGS_NAMESPACE_RE, info.namespace, "lowercase (segments)")
        if problem:
            return problem
        if not (isinstance(info.model, type) and issubclass(info.model, BaseModel)):
            return "model must be a pydantic BaseModel subclass"
        return None

    return _collect(
        pm,
        "register_settings",
        SettingsInfo,
        what="settings namespace",
        key=lambda i: i.namespace,
        validate=validate,
    )


def collect_traits(pm: pluggy.PluginManager) -> dict[str, TraitInfo]:
    """Trait declarations by name, from ``register_traits``. Names are namespaced: ``segments.tier``."""
    from typing import get_args

    from .hooktypes import TraitInfo
    from .models import TraitType

    types = get_args(TraitType)

    def validate(info: TraitInfo) -> str | None:
        problem = _match(TRAIT_NAME_RE, info.name, "namespaced and lowercase (segments.tier)")
        if problem:
            return problem
        if info.type not in types:
            return f"type must be one of {list(types)}, got {info.type!r}"
        return None

    return _collect(pm, "register_traits", TraitInfo, what="trait", key=lambda i: i.name, validate=validate)


def collect_jobs(pm: pluggy.PluginManager) -> dict[str, JobInfo]:
    """Periodic jobs by name, from ``register_jobs``."""
    from .hooktypes import JobInfo

    def validate(info: JobInfo) -> str | None:
        problem = _match(JOB_NAME_RE, info.name, "lowercase, dotted (segments.refit)")
        if problem:
            return problem
        if not callable(info.func):
            return "func must be callable"
        if not isinstance(info.every_seconds, int | float) or info.every_seconds <= 0:
            return f"every_seconds must be a positive number, got {info.every_seconds!r}"
        return None

    return _collect(pm, "register_jobs", JobInfo, what="job", key=lambda i: i.name, validate=validate)
