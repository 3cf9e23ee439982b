"""``cxbridge hooks``: the hook reference, generated from the hook specifications."""

from __future__ import annotations

import typer

__all__ = ["register"]


def hooks(
    markdown: bool = typer.Option(False, "--markdown", help="Print raw Markdown (what docs/hooks.md holds)."),
) -> None:
    """Show the reference of every plugin hook: arguments, call semantics and an example."""
    from ..hookdocs import generate_markdown

    text = generate_markdown()
    if markdown:
        typer.echo(text, nl=False)
        return
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(text, code_theme="ansi_dark"))


def register(app: typer.Typer) -> None:
    app.command("hooks")(hooks)
