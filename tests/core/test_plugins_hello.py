"""The example third-party plugin (examples/hello-plugin), installed and loaded through its entry point."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cxbridge import hookimpl
from cxbridge.cli.app import create_app
from cxbridge.models import Customer
from cxbridge.plugins import PluginFailure, call_isolated, collect_commands, get_plugin_manager
from cxbridge.testing import MemoryContext


@pytest.fixture
def hello_pm(monkeypatch):
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello")
    return get_plugin_manager()


def test_hello_sets_the_greeting_trait_for_changed_customers(hello_pm):
    ctx = MemoryContext(
        customers=[Customer(id="c1", first_name="Ann"), Customer(id="c2"), Customer(id="c3", first_name="Bo")],
        aliases={"old": "c3"},
    )
    failures: list[PluginFailure] = []
    call_isolated(
        hello_pm, "customers_changed", on_failure=failures.append, context=ctx, customer_ids=["c1", "c2", "old"]
    )
    assert failures == []
    assert ctx.traits == {
        "c1": {"hello.greeting": "Hello, Ann!"},
        "c2": {"hello.greeting": "Hello!"},
        "c3": {"hello.greeting": "Hello, Bo!"},
    }
    assert ctx.trait_producers["c1"] == {"hello.greeting": "hello"}
    # unchanged values are not rewritten
    call_isolated(hello_pm, "customers_changed", context=ctx, customer_ids=["c1"])
    assert ctx.trait_writes == 3


def test_a_raising_plugin_is_isolated_and_hello_still_runs(hello_pm):
    class Crashes:
        @hookimpl(tryfirst=True)
        def customers_changed(self, context, customer_ids):
            raise ZeroDivisionError("division by zero")

    hello_pm.register(Crashes(), name="crashes")
    ctx = MemoryContext(customers=[Customer(id="c1", first_name="Ann")])
    failures: list[PluginFailure] = []
    call_isolated(hello_pm, "customers_changed", on_failure=failures.append, context=ctx, customer_ids=["c1"])
    assert ctx.traits["c1"]["hello.greeting"] == "Hello, Ann!"
    assert [(f.plugin, f.hook, type(f.error).__name__) for f in failures] == [
        ("crashes", "customers_changed", "ZeroDivisionError")
    ]


def test_hello_command_runs_through_the_cli(monkeypatch):
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello")
    runner = CliRunner()
    result = runner.invoke(create_app(), ["hello", "--name", "Bob"])
    assert (result.exit_code, result.output) == (0, "Hello, Bob!\n")
    assert runner.invoke(create_app(), ["hello"]).output == "Hello, world!\n"


def test_disabled_hello_has_no_command(monkeypatch):
    monkeypatch.setenv("CXBRIDGE_LOAD_PLUGINS", "hello")
    monkeypatch.setenv("CXBRIDGE_DISABLE_PLUGINS", "cxbridge-hello")
    assert "hello" not in collect_commands(get_plugin_manager())
    result = CliRunner().invoke(create_app(), ["hello"])
    assert result.exit_code == 2
    assert "No such command 'hello'" in result.output
