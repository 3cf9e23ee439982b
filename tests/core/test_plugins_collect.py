"""Collectors: type and name validation, duplicates, registration failures."""

from __future__ import annotations

import types

import pytest
import typer
from pydantic import BaseModel
from starlette.responses import PlainTextResponse

from cxbridge import hookimpl
from cxbridge.adapters import AdapterInfo
from cxbridge.errors import PluginError
from cxbridge.hooktypes import CommandInfo, JobInfo, RouteInfo, SettingsInfo, TraitInfo
from cxbridge.plugins import (
    collect_adapters,
    collect_commands,
    collect_jobs,
    collect_routes,
    collect_settings,
    collect_traits,
)


class Cfg(BaseModel):
    url: str = ""


def _adapter(name: str) -> AdapterInfo:
    return AdapterInfo(name=name, config_model=Cfg, factory=lambda c, ctx: None)


async def _ok(request):
    return PlainTextResponse("ok")


def _plugin(**hooks):
    """A module-like plugin whose hookimpls return the given values (or raise the given exception)."""
    plugin = types.ModuleType("fake_plugin")
    for hook, value in hooks.items():

        def impl(value=value):
            if isinstance(value, Exception):
                raise value
            return value

        impl.__name__ = hook
        setattr(plugin, hook, hookimpl(impl))
    return plugin


def test_adapters_are_collected_by_name_from_every_plugin(plugin_manager, register_plugin):
    register_plugin(_plugin(register_adapters=[_adapter("alpha"), _adapter("beta-crm")]), name="one")
    register_plugin(_plugin(register_adapters=_adapter("gamma")), name="two")  # a single record is accepted
    assert sorted(collect_adapters(plugin_manager)) == ["alpha", "beta-crm", "gamma"]


@pytest.mark.parametrize("name", ["MyCRM", "my_crm", "my--crm", "-crm", "crm-", ""])
def test_adapter_names_must_be_lowercase_dash(plugin_manager, register_plugin, name):
    register_plugin(_plugin(register_adapters=[_adapter(name)]), name="bad")
    with pytest.raises(PluginError, match="lowercase words joined by dashes"):
        collect_adapters(plugin_manager)


def test_adapter_config_model_must_be_pydantic(plugin_manager, register_plugin):
    info = AdapterInfo(name="x", config_model=dict, factory=lambda c, ctx: None)  # type: ignore[arg-type]
    register_plugin(_plugin(register_adapters=[info]), name="bad")
    with pytest.raises(PluginError, match="config_model must be a pydantic BaseModel"):
        collect_adapters(plugin_manager)


def test_duplicate_between_registered_plugins_names_both(plugin_manager, register_plugin):
    register_plugin(_plugin(register_adapters=[_adapter("dup")]), name="first")
    register_plugin(_plugin(register_adapters=[_adapter("dup")]), name="second")
    with pytest.raises(PluginError) as err:
        collect_adapters(plugin_manager)
    assert "'first'" in str(err.value) and "'second'" in str(err.value)


def test_wrong_record_type_names_the_plugin(plugin_manager, register_plugin):
    register_plugin(_plugin(register_adapters=[{"name": "x"}]), name="dicty")
    with pytest.raises(PluginError, match=r"plugin 'dicty'.*returned dict, expected AdapterInfo"):
        collect_adapters(plugin_manager)


def test_non_iterable_result_is_an_error(plugin_manager, register_plugin):
    register_plugin(_plugin(register_traits=42), name="num")
    with pytest.raises(PluginError, match="must return a list of TraitInfo, got int"):
        collect_traits(plugin_manager)


def test_registration_hook_raising_fails_naming_the_plugin(plugin_manager, register_plugin):
    register_plugin(_plugin(register_traits=RuntimeError("boom")), name="explodes")
    with pytest.raises(PluginError, match=r"plugin 'explodes'.*failed in register_traits: RuntimeError: boom"):
        collect_traits(plugin_manager)


@pytest.mark.parametrize("name", ["tier", "Segments.tier", "segments.", "segments..tier", "9x.y"])
def test_trait_names_must_be_namespaced(plugin_manager, register_plugin, name):
    register_plugin(_plugin(register_traits=[TraitInfo(name=name)]), name="t")
    with pytest.raises(PluginError, match="namespaced"):
        collect_traits(plugin_manager)


def test_trait_type_is_checked(plugin_manager, register_plugin):
    register_plugin(_plugin(register_traits=[TraitInfo(name="a.b", type="money")]), name="t")  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="type must be one of"):
        collect_traits(plugin_manager)


def test_commands_cannot_take_builtin_names(plugin_manager, register_plugin):
    register_plugin(_plugin(register_commands=[CommandInfo(name="plugins", app=typer.Typer())]), name="c")
    with pytest.raises(PluginError, match="command 'plugins' clashes with a built-in command"):
        collect_commands(plugin_manager, builtin=["plugins", "hooks"])


def test_command_app_must_be_typer(plugin_manager, register_plugin):
    register_plugin(_plugin(register_commands=[CommandInfo(name="x", app=object())]), name="c")  # type: ignore[arg-type]
    with pytest.raises(PluginError, match=r"app must be a typer\.Typer"):
        collect_commands(plugin_manager)


def test_routes_clash_on_method_and_path(plugin_manager, register_plugin):
    register_plugin(_plugin(register_routes=[RouteInfo("/p", _ok, name="a")]), name="r1")
    register_plugin(_plugin(register_routes=[RouteInfo("/p", _ok, methods=("GET", "POST"), name="b")]), name="r2")
    with pytest.raises(PluginError, match="both serve GET /p"):
        collect_routes(plugin_manager)


def test_routes_on_different_methods_coexist_and_reserved_paths_are_refused(plugin_manager, register_plugin):
    register_plugin(_plugin(register_routes=[RouteInfo("/p", _ok, name="a")]), name="r1")
    register_plugin(_plugin(register_routes=[RouteInfo("/p", _ok, methods=("POST",), name="b")]), name="r2")
    assert sorted(collect_routes(plugin_manager, reserved_paths=["/health"])) == ["a", "b"]
    register_plugin(_plugin(register_routes=[RouteInfo("/health", _ok, name="h")]), name="r3")
    with pytest.raises(PluginError, match="reserved"):
        collect_routes(plugin_manager, reserved_paths=["/health"])


def test_route_path_and_methods_are_checked(plugin_manager, register_plugin):
    register_plugin(_plugin(register_routes=[RouteInfo("p", _ok)]), name="r")
    with pytest.raises(PluginError, match="path must start with '/'"):
        collect_routes(plugin_manager)


def test_settings_and_jobs(plugin_manager, register_plugin):
    register_plugin(
        _plugin(
            register_settings=[SettingsInfo(namespace="demo", model=Cfg)],
            register_jobs=[JobInfo(name="demo.refit", func=lambda ctx: None, every_seconds=60)],
        ),
        name="s",
    )
    assert collect_settings(plugin_manager)["demo"].model is Cfg
    assert collect_jobs(plugin_manager)["demo.refit"].every_seconds == 60


def test_job_interval_must_be_positive(plugin_manager, register_plugin):
    register_plugin(_plugin(register_jobs=[JobInfo(name="j", func=lambda ctx: None, every_seconds=0)]), name="j")
    with pytest.raises(PluginError, match="every_seconds must be a positive number"):
        collect_jobs(plugin_manager)


def test_settings_model_must_be_pydantic(plugin_manager, register_plugin):
    register_plugin(_plugin(register_settings=[SettingsInfo(namespace="demo", model=int)]), name="s")  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="model must be a pydantic BaseModel"):
        collect_settings(plugin_manager)
