"""``cxbridge forget <email|phone|id>``: erase a person (GDPR art. 17) in the store and every CRM."""

from __future__ import annotations

import json
from typing import Any

import typer

from .context import get_state

__all__ = ["register"]


def forget(
    ctx: typer.Context,
    identifier: str = typer.Argument(..., help="Email, phone number or customer id of the person."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Erase a person: ask each linked CRM that supports it to erase, purge the store, keep a hashed ledger.

    Exit code 1 when a CRM could not erase (the store is purged regardless; the report says which).
    """
    from ..erasure import forget as do_forget
    from ..erasure import resolve_customer
    from ..errors import CxbridgeError, NotFound
    from ..sources import build_adapter
    from ..store import open_store

    state = get_state(ctx)
    config = state.load_config()
    pm = state.plugin_manager()
    region = getattr(config.identity, "default_region", None)
    with open_store(config.store.url, base_dir=config.workspace) as store:
        with store.connect() as conn:
            cid = resolve_customer(conn, identifier, default_region=region)
        if cid is None:
            raise NotFound(f"no customer matches {identifier!r}")
        if not yes and not typer.confirm(f"Erase customer {cid} everywhere? This cannot be undone"):
            raise typer.Exit(1)
        adapters: dict[str, Any] = {}
        broken: dict[str, str] = {}
        for name in config.enabled_sources():
            try:
                adapters[name] = build_adapter(config, name, pm=pm, store=store)
            except CxbridgeError as exc:
                broken[name] = f"failed: cannot build adapter: {exc}"
        try:
            report = do_forget(store, adapters, cid, pm=pm, default_region=region)
        finally:
            for adapter in adapters.values():
                adapter.close()
    for name, status in broken.items():
        if name in report.sources:
            report.sources[name] = status
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(
            f"customer [bold]{report.customer_id}[/] erased "
            f"({', '.join(f'{n} {t}' for t, n in sorted(report.deleted.items())) or 'nothing stored'}); "
            f"{report.ledger_entries} hashed ledger entries keep them from being re-imported"
        )
        table = Table("source", "status")
        for name, status in sorted(report.sources.items()):
            style = "green" if status == "erased" else "red" if status.startswith("failed") else "yellow"
            table.add_row(name, f"[{style}]{status}[/]")
        console.print(table)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``forget`` to the root app."""
    app.command("forget")(forget)
