"""``cxbridge db upgrade|current``: the store's schema migrations."""

from __future__ import annotations

import json

import typer

from .context import get_state

__all__ = ["register"]

db_app = typer.Typer(help="The store: schema migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Apply pending schema migrations (cxbridge also does this by itself on first use)."""
    from ..store import open_store
    from ..store.migrate import current_revision
    from ..store.migrate import upgrade as do_upgrade

    config = get_state(ctx).load_config()
    with open_store(config.store.url, migrate=False, base_dir=config.workspace) as store:
        before = current_revision(store)
        applied = do_upgrade(store)
        after = current_revision(store)
        if applied:
            typer.echo(f"store {store.url} upgraded from {before or 'empty'} to {after}")
        else:
            typer.echo(f"store {store.url} is up to date at {after}")


@db_app.command("current")
def current(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the store's schema revision and whether migrations are pending (exit 1 if so)."""
    from ..store import open_store
    from ..store.migrate import current_revision, head_revision

    config = get_state(ctx).load_config()
    with open_store(config.store.url, migrate=False, base_dir=config.workspace) as store:
        rev, head = current_revision(store), head_revision()
        if as_json:
            typer.echo(json.dumps({"url": store.url, "revision": rev, "head": head, "up_to_date": rev == head}))
        else:
            state = "up to date" if rev == head else f"behind (newest is {head}; run `cxbridge db upgrade`)"
            typer.echo(f"store {store.url}: revision {rev or 'none (empty)'} -- {state}")
    if rev != head:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``db`` to the root app."""
    app.add_typer(db_app, name="db")
