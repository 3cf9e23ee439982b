"""call_isolated: a plugin raising in a hook is recorded; the others run; pluggy ordering is kept."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from cxbridge import hookimpl
from cxbridge.errors import RecordError
from cxbridge.hooktypes import IdentityCandidate, IdentityDecision
from cxbridge.models import SourceRecord
from cxbridge.plugins import PluginFailure, call_isolated, plugin_info


class Recorder:
    def __init__(self, name: str, calls: list[str], *, fail: Exception | None = None) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail

    @hookimpl
    def customers_changed(self, context, customer_ids):
        self.calls.append(self.name)
        if self.fail is not None:
            raise self.fail
        context.set_traits(customer_ids[0], {f"{self.name}.seen": True}, producer=self.name)


def _candidate() -> IdentityCandidate:
    record = SourceRecord(
        source="shop",
        object_type="customers",
        source_id="1",
        fields={"email": "a@example.com"},
        modstamp=datetime(2024, 1, 1, tzinfo=UTC),
    )
    return IdentityCandidate(record=record, keys=("email:a@example.com",), patch={})


def test_failing_plugin_is_recorded_and_others_still_run(plugin_manager, register_plugin, plugin_context):
    calls: list[str] = []
    failures: list[PluginFailure] = []
    register_plugin(Recorder("alpha", calls), name="alpha")
    register_plugin(Recorder("broken", calls, fail=ValueError("bad value")), name="broken")
    register_plugin(Recorder("omega", calls), name="omega")

    result = call_isolated(
        plugin_manager,
        "customers_changed",
        on_failure=failures.append,
        context=plugin_context,
        customer_ids=["c1"],
    )

    assert result == []
    assert sorted(calls) == ["alpha", "broken", "omega"]
    assert plugin_context.traits["c1"] == {"alpha.seen": True, "omega.seen": True}
    [failure] = failures
    assert (failure.plugin, failure.hook, failure.distribution) == ("broken", "customers_changed", None)
    assert isinstance(failure.error, ValueError)
    assert "in customers_changed" in failure.traceback and "bad value" in failure.traceback
    assert str(failure) == "plugin 'broken' failed in customers_changed: ValueError: bad value"


def test_without_callback_failures_are_logged(plugin_manager, register_plugin, plugin_context, caplog):
    register_plugin(Recorder("broken", [], fail=KeyError("x")), name="broken")
    with caplog.at_level(logging.WARNING, logger="cxbridge.plugins"):
        call_isolated(plugin_manager, "customers_changed", context=plugin_context, customer_ids=["c1"])
    assert any("plugin 'broken' failed in customers_changed" in r.getMessage() for r in caplog.records)


def test_propagated_exception_types_are_reraised(plugin_manager, register_plugin, plugin_context):
    register_plugin(Recorder("strict", [], fail=RecordError("bad record", source_id="7")), name="strict")
    with pytest.raises(RecordError):
        call_isolated(
            plugin_manager,
            "customers_changed",
            on_failure=lambda f: None,
            propagate=(RecordError,),
            context=plugin_context,
            customer_ids=["c1"],
        )


def test_order_follows_pluggy_tryfirst_trylast_and_registration(plugin_manager, register_plugin):
    calls: list[str] = []

    class Plain:
        def __init__(self, name):
            self.name = name

        @hookimpl
        def sync_started(self, run):
            calls.append(self.name)

    class First:
        @hookimpl(tryfirst=True)
        def sync_started(self, run):
            calls.append("first")

    class Last:
        @hookimpl(trylast=True)
        def sync_started(self, run):
            calls.append("last")

    register_plugin(Last(), name="last")
    register_plugin(Plain("p1"), name="p1")
    register_plugin(First(), name="first")
    register_plugin(Plain("p2"), name="p2")

    call_isolated(plugin_manager, "sync_started", run=None)
    isolated = list(calls)
    calls.clear()
    plugin_manager.hook.sync_started(run=None)
    assert isolated == calls == ["first", "p2", "p1", "last"]


def test_firstresult_stops_at_first_non_none_and_skips_failures(plugin_manager, register_plugin):
    calls: list[str] = []
    failures: list[PluginFailure] = []
    decision = IdentityDecision(action="new", rule="test")

    class Fallback:
        @hookimpl(trylast=True)
        def resolve_identity(self, candidate, matches):
            calls.append("fallback")
            return IdentityDecision(action="link", customer_id="x")

    class Abstains:
        @hookimpl(tryfirst=True)
        def resolve_identity(self, candidate):
            calls.append("abstains")
            return None

    class Raises:
        @hookimpl(tryfirst=True)
        def resolve_identity(self, candidate, matches):
            calls.append("raises")
            raise RuntimeError("resolver bug")

    class Decides:
        @hookimpl
        def resolve_identity(self, candidate, matches):
            calls.append("decides")
            return decision

    for name, plugin in [
        ("fallback", Fallback()),
        ("abstains", Abstains()),
        ("raises", Raises()),
        ("decides", Decides()),
    ]:
        register_plugin(plugin, name=name)

    result = call_isolated(
        plugin_manager, "resolve_identity", on_failure=failures.append, candidate=_candidate(), matches=[]
    )
    assert result is decision
    assert calls == ["raises", "abstains", "decides"]
    assert [f.plugin for f in failures] == ["raises"]


def test_firstresult_returns_none_when_nobody_decides(monkeypatch):
    from cxbridge import plugins

    monkeypatch.setattr(plugins, "DEFAULT_PLUGINS", ())  # no built-in resolver
    pm = plugins.get_plugin_manager(load_entrypoints=False)
    assert call_isolated(pm, "resolve_identity", candidate=_candidate(), matches=[]) is None


def test_hook_wrappers_are_reported_not_run(plugin_manager, register_plugin):
    failures: list[PluginFailure] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def sync_finished(self, run):
            raise AssertionError("must not run")
            yield  # pragma: no cover

    register_plugin(Wrapper(), name="wrapper")
    call_isolated(plugin_manager, "sync_finished", on_failure=failures.append, run=None)
    assert [(f.plugin, "wrappers are not supported" in str(f.error)) for f in failures] == [("wrapper", True)]


def test_unknown_hook_and_missing_arguments_are_type_errors(plugin_manager):
    with pytest.raises(TypeError, match="unknown hook 'no_such_hook'"):
        call_isolated(plugin_manager, "no_such_hook")
    with pytest.raises(TypeError, match="missing arguments: customer_ids"):
        call_isolated(plugin_manager, "customers_changed", context=None)


def test_plugin_info_lists_registered_plugins(plugin_manager, register_plugin):
    register_plugin(Recorder("alpha", []), name="alpha")
    [info] = [i for i in plugin_info(plugin_manager) if i.kind != "builtin"]
    assert info.to_json() == {
        "name": "alpha",
        "distribution": None,
        "version": None,
        "hooks": ["customers_changed"],
        "kind": "registered",
    }
