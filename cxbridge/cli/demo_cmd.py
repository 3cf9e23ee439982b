"""``cxbridge demo``: the main job on the embedded default, with seeded data."""

from __future__ import annotations

from pathlib import Path

import typer

from .context import get_state

__all__ = ["register"]


def demo(
    ctx: typer.Context,
    directory: Path = typer.Argument(Path("cxbridge-demo"), help="Workspace folder to (re)create."),
) -> None:
    """Create a demo workspace with two local CRMs, sync them, resolve identities, score, write back, show."""
    from rich.console import Console

    from ..demo.run import run_demo

    run_demo(directory, pm=get_state(ctx).plugin_manager(), console=Console(width=120))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
