"""``cxbridge plugins list``: installed plugins, their distributions, versions, hooks and load failures."""

from __future__ import annotations

import typer

__all__ = ["register"]

plugins_app = typer.Typer(help="Inspect installed plugins.", no_args_is_help=True)


@plugins_app.command("list")
def list_plugins(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List registered plugins with distribution, version and hooks, and plugins that failed to load."""
    import json

    from ..plugins import load_failures, plugin_info
    from .context import get_state

    pm = get_state(ctx).plugin_manager()
    infos = plugin_info(pm)
    failures = load_failures(pm)
    if as_json:
        data = {
            "plugins": [i.to_json() for i in infos],
            "failures": [
                {"name": f.name, "distribution": f.distribution, "version": f.version, "error": f.error}
                for f in failures
            ],
        }
        typer.echo(json.dumps(data, indent=2))
        return

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title="cxbridge plugins")
    for column in ("name", "distribution", "version", "hooks"):
        table.add_column(column)
    for info in infos:
        table.add_row(
            escape(info.name), escape(info.distribution or "-"), escape(info.version or "-"), ", ".join(info.hooks)
        )
    console.print(table)
    if not infos:
        console.print("no plugins registered")
    for failure in failures:
        console.print(
            f"[red]failed to load[/] {escape(failure.name)} from {escape(failure.distribution or '?')} "
            f"{escape(failure.version or '')}: {escape(failure.error)}",
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(plugins_app, name="plugins")
