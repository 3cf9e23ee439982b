"""``cxbridge forget <email|phone|id>``: erase a person (GDPR art. 17) in the store and every CRM;
``cxbridge erasures list|retry``: CRM erasures that did not go through yet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from .context import get_state

__all__ = ["register"]

erasures_app = typer.Typer(
    help="CRM erasures of forgotten people that a CRM has not confirmed yet (kept as CRM record ids only).",
    no_args_is_help=True,
)


@contextmanager
def _adapters(config: Any, pm: Any, store: Any) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """Adapters of the enabled sources, and the sources whose adapter could not be built -> why; the adapters
    are closed on leaving."""
    from ..sources import build_adapter, build_available

    adapters, unavailable = build_available(config.enabled_sources(),
                                            lambda name: build_adapter(config, name, pm=pm, store=store))
    try:
        yield adapters, unavailable
    finally:
        for adapter in adapters.values():
            adapter.close()


def forget(
    ctx: typer.Context,
    identifier: str = typer.Argument(..., help="Email, phone number or customer id of the person."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Erase a person: ask each linked CRM that supports it to erase, purge the store, keep a hashed ledger.

    Exit code 1 when a CRM could not erase (the store is purged regardless; the report says which, and
    `cxbridge erasures retry` asks that CRM again).
    """
    from ..erasure import forget as do_forget
    from ..erasure import resolve_customer
    from ..errors import NotFound
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
        with _adapters(config, pm, store) as (adapters, broken):
            report = do_forget(store, adapters, cid, pm=pm, default_region=region, unavailable=broken)
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
            console.print("the records those CRMs still hold are kept (ids only) for `cxbridge erasures retry`")
    if not report.ok:
        raise typer.Exit(1)


@erasures_app.command("list")
def list_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """CRM records of forgotten people still to erase, oldest request first."""
    from ..erasure import pending_erasures
    from ..store import open_store

    config = get_state(ctx).load_config()
    with open_store(config.store.url, base_dir=config.workspace) as store, store.connect() as conn:
        rows = [dict(row._mapping) for row in pending_erasures(conn)]
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("source", "object", "record", "customer", "requested", "attempts", "last error",
                  title=f"pending CRM erasures ({len(rows)})")
    for row in rows:
        table.add_row(row["source"], row["object_type"], row["source_id"], row["customer_id"],
                      row["requested_at"].strftime("%Y-%m-%d %H:%M:%S"), str(row["attempts"]),
                      row["last_error"][:120])
    Console().print(table)


@erasures_app.command("retry")
def retry_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Ask the CRMs again to erase what they did not confirm. Exit code 1 while anything is left."""
    from ..erasure import retry_erasures
    from ..store import open_store

    state = get_state(ctx)
    config = state.load_config()
    pm = state.plugin_manager()
    with open_store(config.store.url, base_dir=config.workspace) as store:
        with _adapters(config, pm, store) as (adapters, broken):
            report = retry_erasures(store, adapters, unavailable=broken)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    elif not report.erased:
        typer.echo("no CRM erasures pending")
    else:
        for source in sorted(report.erased):
            line = f"{source}: {report.erased[source]} erased, {report.pending[source]} still pending"
            if report.errors.get(source):
                line += f" ({report.errors[source]})"
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``forget`` and ``erasures`` to the root app."""
    app.command("forget")(forget)
    app.add_typer(erasures_app, name="erasures")
