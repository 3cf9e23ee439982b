"""``cxbridge customers show|search`` (the 360° view) and ``cxbridge export``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .context import get_state

if TYPE_CHECKING:
    from ..bridge import Bridge

__all__ = ["open_bridge", "register"]

customers_app = typer.Typer(help="The 360° view of customers.", no_args_is_help=True)


def open_bridge(ctx: typer.Context) -> Bridge:
    """A :class:`~cxbridge.Bridge` for the CLI's config and plugin manager."""
    from ..bridge import Bridge
    from ..config import load_config
    from ..store import open_store

    state = get_state(ctx)
    pm = state.plugin_manager()
    # Validate the config with the CLI's own plugin manager (the adapters and traits it knows), not a second one.
    config = load_config(state.config_path, pm=pm)
    return Bridge(config, open_store(config.store.url, base_dir=config.workspace), pm)


@customers_app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Customer id, email, phone or source/source_id."),
    as_json: bool = typer.Option(False, "--json", help="Print the view as JSON."),
    interactions: int = typer.Option(20, help="How many recent interactions to show."),
) -> None:
    """Show one customer: identities in every source, attributes with provenance, consent, traits, timeline."""
    with open_bridge(ctx) as bridge:
        view = bridge.customer(ref, interactions=interactions)
    if as_json:
        payload = {
            "customer": view.customer.model_dump(mode="json"),
            "identities": [
                {**i.__dict__, "modstamp": i.modstamp.isoformat() if i.modstamp else None} for i in view.identities
            ],
            "interactions": [i.model_dump(mode="json") for i in view.interactions],
            "open_writes": view.open_writes,
            "events": view.events,
        }
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    from rich.console import Console

    from .render import customer_360_renderable

    Console().print(customer_360_renderable(view))


@customers_app.command("search")
def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="Part of a name, email or phone number."),
    limit: int = typer.Option(20, help="Maximum results."),
) -> None:
    """Find customers by name, email or phone."""
    from rich.console import Console

    from .render import customers_table

    with open_bridge(ctx) as bridge:
        found = bridge.search_customers(query, limit=limit)
    Console().print(customers_table(found, title=f"{len(found)} customer(s) matching {query!r}"))


def export(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="customers | interactions | links"),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl | csv"),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: standard output)."),
) -> None:
    """Export golden records (with every linked source id), interactions or identity links."""
    from ..export import check_export

    check_export(kind, fmt)
    with open_bridge(ctx) as bridge:
        if output is None:
            n = bridge.export(kind, fmt, sys.stdout)
        else:
            # Written next to the target and renamed at the end: a failed export leaves no half file behind.
            partial = output.with_name(f".{output.name}.partial")
            try:
                with partial.open("w", encoding="utf-8", newline="") as out:
                    n = bridge.export(kind, fmt, out)
                partial.replace(output)
            finally:
                partial.unlink(missing_ok=True)
    if output is not None:
        typer.echo(f"wrote {n} {kind} to {output}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(customers_app, name="customers")
    app.command("export")(export)
