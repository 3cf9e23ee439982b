"""``cxbridge version``."""

from __future__ import annotations

import typer

__all__ = ["register"]


def version() -> None:
    """Show the cxbridge version."""
    import platform

    from .. import __version__

    typer.echo(f"cxbridge {__version__} (Python {platform.python_version()})")


def register(app: typer.Typer) -> None:
    app.command("version")(version)
