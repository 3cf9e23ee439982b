"""Hooks and their documentation stay in step (datasette's test_plugin_hooks_are_documented)."""

from __future__ import annotations

import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cxbridge import hookspecs
from cxbridge.cli.app import create_app
from cxbridge.hookdocs import check_hookspec, generate_markdown, hook_phases, hookspec_functions

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"
SPECS = hookspec_functions()


def test_there_are_hooks_of_every_kind():
    assert {"register_adapters", "customers_changed", "resolve_identity", "prepare_writes"} <= set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_fully_documented(name):
    assert check_hookspec(SPECS[name]) == []


def test_every_hook_sits_in_a_phase_in_source_order():
    phases = hook_phases()
    assert [p.title for p in phases] == [
        "Registration hooks",
        "Configuration hooks",
        "Sync lifecycle hooks",
        "Write-back hooks",
    ]
    placed = [h.name for p in phases for h in p.hooks]
    assert sorted(placed) == sorted(SPECS)
    assert len(placed) == len(set(placed))
    assert placed[0] == "register_adapters"
    assert {h.name for p in phases for h in p.hooks if h.firstresult} == {"resolve_identity"}


# ------------------------------------------------------------------------------------------------------------
# The checker itself must catch every kind of omission
# ------------------------------------------------------------------------------------------------------------


def undocumented_hook(context: Any, batch: list[str]) -> None:
    pass


def badly_documented_hook(context: Any, batch: list[str], mode: str) -> None:
    """Summary line that runs on
    into a second line.

    Does things to the batch.

    :param context: the context.
    :param batchez: misspelled.

    Example::

        def badly_documented_hook(context, batch):
            pass
    """


def example_without_impl_hook(batch: list[str]) -> None:
    """Receive a batch.

    Called for every plugin.

    :param batch: the batch.

    Example::

        @hookimpl
        def some_other_name(batch):
            pass
    """


def well_documented_hook(batch: list[str]) -> None:
    """Receive a batch.

    Stops at the first non-None result.

    :param batch: the batch.

    Example::

        @hookimpl
        def well_documented_hook(batch):
            return None
    """


def test_checker_flags_a_missing_docstring():
    assert check_hookspec(undocumented_hook) == ["undocumented_hook: no docstring"]


def test_checker_flags_every_missing_part():
    problems = check_hookspec(badly_documented_hook)
    expected = [
        "badly_documented_hook: the summary must be one line followed by a blank line",
        "badly_documented_hook: argument 'batch' is not documented with ':param batch:'",
        "badly_documented_hook: argument 'mode' is not documented with ':param mode:'",
        "badly_documented_hook: ':param batchez:' documents an argument the hook does not have",
        "badly_documented_hook: the call semantics are not stated ('Called ...' or 'Stops at ...')",
        "badly_documented_hook: the example does not contain '@hookimpl'",
    ]
    assert problems == expected


def test_checker_flags_an_example_that_implements_another_hook():
    assert check_hookspec(example_without_impl_hook) == [
        "example_without_impl_hook: the example does not implement 'def example_without_impl_hook('"
    ]


def test_checker_flags_a_missing_example():
    def no_example_hook(batch: list[str]) -> None:
        """Receive a batch.

        Called once.

        :param batch: the batch.
        """

    assert check_hookspec(no_example_hook) == ["no_example_hook: no 'Example::' block"]


def test_checker_accepts_a_complete_hook():
    assert check_hookspec(well_documented_hook) == []


def test_reference_of_a_spec_module_with_a_bad_hook_is_generated_and_checked():
    source = textwrap.dedent(
        '''
        """Specs."""
        import pluggy

        PROJECT_NAME = "demo"
        hookspec = pluggy.HookspecMarker(PROJECT_NAME)

        # ----------------------------------------------------------------------------
        # Demo hooks: called for tests.
        # ----------------------------------------------------------------------------


        @hookspec
        def demo_hook(x):
            """Do nothing."""
        '''
    )
    module = types.ModuleType("demo_specs")
    exec(compile(source, "<demo_specs>", "exec"), module.__dict__)
    functions = hookspec_functions(module)
    assert list(functions) == ["demo_hook"]
    assert check_hookspec(functions["demo_hook"]) != []


# ------------------------------------------------------------------------------------------------------------
# The generated reference
# ------------------------------------------------------------------------------------------------------------


def test_docs_hooks_md_is_the_generated_reference():
    assert DOCS.read_text() == generate_markdown(), "regenerate with: cxbridge hooks --markdown > docs/hooks.md"


def test_reference_has_every_hook_signature_and_example():
    text = generate_markdown()
    for name in SPECS:
        assert f"### `{name}`" in text
    assert "customers_changed(context: PluginContext, customer_ids: Sequence[str]) -> None" in text
    assert text.count("**Example**") == len(SPECS)
    assert "*firstresult*" in text
    assert "::" not in text.replace("Stops at", "")  # every reST literal block became a fenced block


def test_cxbridge_hooks_command_prints_the_reference():
    app = create_app(plugin_manager_factory=lambda: pytest.fail("hooks must not load plugins"))
    raw = CliRunner().invoke(app, ["hooks", "--markdown"])
    assert raw.exit_code == 0, raw.output
    assert raw.output == generate_markdown()
    pretty = CliRunner().invoke(app, ["hooks"])
    assert pretty.exit_code == 0, pretty.output
    for name in SPECS:
        assert name in pretty.output
    assert "```" not in pretty.output  # rendered, not raw


def test_the_spec_module_docstring_intro_is_in_the_reference():
    assert (hookspecs.__doc__ or "").splitlines()[0] in generate_markdown()
