"""``cxbridge segments ...`` commands: report, show, refit.

Commands work on a :class:`~cxbridge.hooktypes.PluginContext` obtained from the core
(``cxbridge.Bridge.from_config(path).context()``); tests (and embedders) can swap the factory with
:func:`set_context_factory`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import typer

__all__ = ["app", "open_context", "set_context_factory"]

app = typer.Typer(help="Customer segments: RFM, value tiers with service levels, CLV and rule segments.",
                  no_args_is_help=True, add_completion=False)

ContextFactory = Callable[[typer.Context], AbstractContextManager[Any]]
_factory: ContextFactory | None = None


def set_context_factory(factory: ContextFactory | None) -> None:
    """Use ``factory(typer_ctx)`` (a context manager yielding a PluginContext) instead of the core's Bridge."""
    global _factory
    _factory = factory


@contextmanager
def _bridge_context(ctx: typer.Context) -> Iterator[Any]:
    import cxbridge
    from cxbridge.cli.context import get_state

    from .pipeline import flush

    try:
        bridge_cls = cxbridge.Bridge
    except (AttributeError, ImportError) as exc:
        raise typer.BadParameter(f"this cxbridge core has no Bridge API ({exc})") from None
    state = get_state(ctx)
    bridge = bridge_cls.from_config(state.config_path, pm=state.plugin_manager())
    try:
        context = bridge.context()
        yield context
        flush(context)  # apply what the command collected (traits, events) in one transaction
    finally:
        close = getattr(bridge, "close", None)
        if callable(close):
            close()


def open_context(ctx: typer.Context) -> AbstractContextManager[Any]:
    """A PluginContext on the configured store, as a context manager."""
    return (_factory or _bridge_context)(ctx)


def _console() -> Any:
    from rich.console import Console

    return Console()


@app.command()
def report(
    ctx: typer.Context,
    html: Path | None = typer.Option(None, "--html", help="Also write a self-contained HTML report here."),
) -> None:
    """Distribution of customers and revenue per RFM segment and value tier, with charts."""
    from .report import render_html, render_terminal, report_from_context

    with open_context(ctx) as context:
        data = report_from_context(context)
    console = _console()
    render_terminal(data, console)
    if html is not None:
        html.write_text(render_html(data), encoding="utf-8")
        console.print(f"HTML report written to {html}")


@app.command()
def show(
    ctx: typer.Context,
    customer: str = typer.Argument(..., help="Golden customer id or email address."),
    rescore: bool = typer.Option(False, "--rescore", help="Re-score the customer before showing."),
) -> None:
    """The segments, tier, service level and CLV of one customer."""
    from rich.table import Table

    from .pipeline import flush
    from .pipeline import rescore as do_rescore

    with open_context(ctx) as context:
        found = _find_customer(context, customer)
        if found is None:
            _console().print(f"[red]no customer {customer!r}[/red]")
            raise typer.Exit(1)
        if rescore:
            do_rescore(context, [found.id])
            flush(context)  # a collecting store context applies the new traits before they are re-read
            found = context.get_customers([found.id])[0]
        traits = {name: _trait_value(context, found, name) for name in _segment_trait_names(context, found)}
    table = Table(title=f"Segments of {found.display_name} ({found.id})")
    table.add_column("Trait")
    table.add_column("Value")
    for name, value in sorted(traits.items()):
        table.add_row(name, "—" if value is None else str(value))
    _console().print(table)


def _segment_trait_names(context: Any, customer: Any) -> list[str]:
    from .pipeline import settings_of
    from .traits import STATIC_TRAITS, rule_trait

    names = [n for n, _, _ in STATIC_TRAITS] + [rule_trait(r) for r in settings_of(context).rules]
    return names


def _trait_value(context: Any, customer: Any, name: str) -> Any:
    # A context may keep written traits apart from the customer objects it hands out (test kits do).
    written = getattr(context, "traits", None)
    if isinstance(written, dict) and name in written.get(customer.id, {}):
        return written[customer.id][name]
    return customer.trait(name)


def _find_customer(context: Any, key: str) -> Any:
    found = context.get_customers([key])
    if found:
        return found[0]
    if "@" in key:
        wanted = key.strip().lower()
        for batch in context.iter_customers(batch_size=5000):
            for customer in batch:
                if wanted in customer.emails:
                    return customer
    return None


@app.command()
def refit(ctx: typer.Context) -> None:
    """Refit RFM quintiles, CLV models and tier boundaries now, and re-score every customer."""
    from .pipeline import refit as do_refit

    with open_context(ctx) as context:
        stats = do_refit(context)
    console = _console()
    state = stats.state
    console.print(f"re-scored {stats.customers:,} customers ({stats.skipped_opt_out} opted out of profiling, "
                  f"{stats.events} segment events, {stats.rule_errors} rule errors)")
    console.print(f"tiers: {stats.tiers}")
    if state is not None:
        console.print(f"BG/NBD: {state.bgnbd}")
        console.print(f"Gamma-Gamma: {state.gamma_gamma}")
