"""Plugin manager: entry-point discovery, allow/deny lists, broken and misspelled plugins, defaults, tracing."""

from __future__ import annotations

import logging

import pytest

from cxbridge import plugins
from cxbridge.errors import PluginError
from cxbridge.plugins import (
    collect_adapters,
    collect_traits,
    get_plugin_manager,
    load_failures,
    plugin_info,
)

GOOD = """
from cxbridge import hookimpl

@hookimpl
def register_traits():
    from cxbridge.hooktypes import TraitInfo
    return [TraitInfo(name="good.flag", type="boolean")]
"""

ADAPTER = """
from pydantic import BaseModel
from cxbridge import hookimpl
from cxbridge.adapters import AdapterInfo

class Config(BaseModel):
    url: str = ""

@hookimpl
def register_adapters():
    return [AdapterInfo(name="mycrm", config_model=Config, factory=lambda config, context: None)]
"""


def _names(pm):
    """Names of the plugins that are not built in."""
    return {info.name for info in plugin_info(pm) if info.kind != "builtin"}


def test_manager_is_new_on_every_call():
    assert get_plugin_manager(load_entrypoints=False) is not get_plugin_manager(load_entrypoints=False)


def test_example_plugin_is_discovered_through_its_entry_point(monkeypatch):
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello")
    pm = get_plugin_manager()
    [info] = [i for i in plugin_info(pm) if i.kind != "builtin"]
    assert (info.name, info.distribution, info.version, info.kind) == (
        "hello",
        "cxbridge-hello",
        "0.1.0",
        "entrypoint",
    )
    assert info.hooks == ("customers_changed", "register_commands", "register_traits")
    assert collect_traits(pm)["hello.greeting"].type == "string"


def test_isolated_manager_loads_no_entry_points(monkeypatch):
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello")
    assert _names(get_plugin_manager(load_entrypoints=False)) == set()


@pytest.mark.parametrize("allow", ["hello", "cxbridge-hello", "cxbridge_hello", " Hello , other"])
def test_allow_list_matches_entry_point_or_distribution_name(monkeypatch, allow):
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", allow)
    assert _names(get_plugin_manager()) == {"hello"}


def test_empty_allow_list_loads_no_plugin(monkeypatch):
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "")
    pm = get_plugin_manager()
    assert _names(pm) == set()
    assert load_failures(pm) == []


def test_deny_list_wins_over_allow_list(monkeypatch, make_dist):
    make_dist("cxbridge-good", modules={"good_plugin.py": GOOD}, entry_points={"good": "good_plugin"})
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello,good")
    monkeypatch.setenv("CXBRIDGE_DISABLE_PLUGINS", "cxbridge-hello")
    pm = get_plugin_manager()
    assert _names(pm) == {"good"}
    assert set(collect_traits(pm)) == {"good.flag"}


def test_broken_plugin_warns_once_naming_its_distribution_and_the_rest_loads(monkeypatch, make_dist, caplog):
    make_dist(
        "cxbridge-broken",
        version="2.3",
        modules={"broken_plugin.py": "import not_a_module_anywhere\n"},
        entry_points={"broken": "broken_plugin"},
    )
    make_dist("cxbridge-good", modules={"good_plugin.py": GOOD}, entry_points={"good": "good_plugin"})
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello,broken,good")
    with caplog.at_level(logging.WARNING, logger="cxbridge.plugins"):
        pm = get_plugin_manager()
    assert _names(pm) == {"hello", "good"}
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "cxbridge-broken" in warnings[0].getMessage()
    [failure] = load_failures(pm)
    assert (failure.name, failure.distribution, failure.version) == ("broken", "cxbridge-broken", "2.3")
    assert "not_a_module_anywhere" in failure.error
    assert "Traceback" in failure.traceback


def test_plugin_with_invalid_hookimpl_signature_is_skipped(monkeypatch, make_dist, caplog):
    bad = """
    from cxbridge import hookimpl

    @hookimpl
    def customers_changed(context, customer_ids, not_an_argument):
        pass
    """
    make_dist("cxbridge-badargs", modules={"badargs_plugin.py": bad}, entry_points={"badargs": "badargs_plugin"})
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "badargs,hello")
    with caplog.at_level(logging.WARNING, logger="cxbridge.plugins"):
        pm = get_plugin_manager()
    assert _names(pm) == {"hello"}
    [failure] = load_failures(pm)
    assert failure.distribution == "cxbridge-badargs"
    assert "not_an_argument" in failure.error
    assert len([r for r in caplog.records if "cxbridge-badargs" in r.getMessage()]) == 1


def test_misspelled_hook_is_an_error_naming_plugin_distribution_and_suggestion(monkeypatch, make_dist):
    typo = """
    from cxbridge import hookimpl

    @hookimpl
    def customer_changed(context, customer_ids):
        pass
    """
    make_dist("cxbridge-typo", modules={"typo_plugin.py": typo}, entry_points={"typo": "typo_plugin"})
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "typo")
    with pytest.raises(PluginError) as err:
        get_plugin_manager()
    message = str(err.value)
    assert "cxbridge-typo" in message
    assert "'customer_changed'" in message
    assert "did you mean 'customers_changed'" in message
    assert err.value.distribution == "cxbridge-typo"


def test_optional_unknown_hook_is_allowed(monkeypatch, make_dist):
    optional = """
    from cxbridge import hookimpl

    @hookimpl(optionalhook=True)
    def some_future_hook():
        pass
    """
    make_dist("cxbridge-opt", modules={"opt_plugin.py": optional}, entry_points={"opt": "opt_plugin"})
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "opt")
    assert _names(get_plugin_manager()) == {"opt"}


def test_duplicate_adapter_names_fail_naming_both_distributions(monkeypatch, make_dist):
    make_dist("cxbridge-crm-one", modules={"crm_one.py": ADAPTER}, entry_points={"crm-one": "crm_one"})
    make_dist("cxbridge-crm-two", modules={"crm_two.py": ADAPTER}, entry_points={"crm-two": "crm_two"})
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "crm-one,crm-two")
    pm = get_plugin_manager()
    with pytest.raises(PluginError) as err:
        collect_adapters(pm)
    assert "duplicate adapter 'mycrm'" in str(err.value)
    assert "cxbridge-crm-one" in str(err.value)
    assert "cxbridge-crm-two" in str(err.value)


def test_same_entry_point_name_in_two_distributions_records_a_failure(monkeypatch, make_dist):
    make_dist("cxbridge-first", modules={"first_plugin.py": GOOD}, entry_points={"samename": "first_plugin"})
    make_dist("cxbridge-second", modules={"second_plugin.py": GOOD}, entry_points={"samename": "second_plugin"})
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "samename")
    pm = get_plugin_manager()
    assert _names(pm) == {"samename"}
    [failure] = load_failures(pm)
    assert "already taken" in failure.error
    [loaded] = [i for i in plugin_info(pm) if i.kind != "builtin"]
    assert {failure.distribution, loaded.distribution} == {"cxbridge-first", "cxbridge-second"}


def test_default_plugins_are_registered_as_builtins_and_can_be_disabled(monkeypatch, make_dist):
    make_dist("unused", modules={"builtin_for_test.py": GOOD}, entry_points={})
    monkeypatch.setattr(plugins, "DEFAULT_PLUGINS", ("builtin_for_test",))
    pm = get_plugin_manager(load_entrypoints=False)
    [info] = plugin_info(pm)
    assert (info.name, info.kind, info.distribution) == ("builtin_for_test", "builtin", "cxbridge")
    assert set(collect_traits(pm)) == {"good.flag"}
    monkeypatch.setenv("CXBRIDGE_DISABLE_PLUGINS", "builtin_for_test")
    assert _names(get_plugin_manager(load_entrypoints=False)) == set()


def test_shipped_default_plugins_are_registered():
    pm = get_plugin_manager(load_entrypoints=False)
    builtins = {i.name: i for i in plugin_info(pm) if i.kind == "builtin"}
    assert set(builtins) == set(plugins.DEFAULT_PLUGINS)
    assert all(i.distribution == "cxbridge" for i in builtins.values())


def test_missing_default_plugin_is_an_error(monkeypatch):
    monkeypatch.setattr(plugins, "DEFAULT_PLUGINS", ("cxbridge.no_such_builtin",))
    with pytest.raises(PluginError, match=r"built-in plugin cxbridge\.no_such_builtin cannot be loaded"):
        get_plugin_manager(load_entrypoints=False)


def test_tracing_logs_hook_calls(monkeypatch, caplog):
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello")
    monkeypatch.setenv("CXBRIDGE_TRACE_PLUGINS", "1")
    pm = get_plugin_manager()
    with caplog.at_level(logging.DEBUG, logger="cxbridge.plugins"):
        pm.hook.register_traits()
    traced = [r.getMessage() for r in caplog.records if r.name == "cxbridge.plugins"]
    assert any("register_traits" in m for m in traced)
    assert any("finish" in m and "hello.greeting" in m for m in traced)


def test_no_tracing_by_default(monkeypatch, caplog):
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello")
    pm = get_plugin_manager()
    with caplog.at_level(logging.DEBUG, logger="cxbridge.plugins"):
        pm.hook.register_traits()
    assert [r for r in caplog.records if r.name == "cxbridge.plugins"] == []
