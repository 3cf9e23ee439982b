"""The hello plugin: what a third-party plugin looks like, using only cxbridge's public API.

- ``register_traits`` declares the ``hello.greeting`` trait, so write-back rules can name it;
- ``customers_changed`` sets it for every changed customer;
- ``register_commands`` adds ``cxbridge hello``.

Imports of typer and of the hook types happen inside the hooks: a plugin module is imported whenever
cxbridge starts (``cxbridge --help`` included), so its top level stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cxbridge import hookimpl

if TYPE_CHECKING:
    from cxbridge.hooktypes import CommandInfo, PluginContext, TraitInfo

PRODUCER = "hello"


def greeting(first_name: str | None) -> str:
    """The greeting for a customer's first name."""
    return f"Hello, {first_name.strip()}!" if first_name and first_name.strip() else "Hello!"


@hookimpl
def register_traits() -> list[TraitInfo]:
    from cxbridge.hooktypes import TraitInfo

    return [TraitInfo(name="hello.greeting", type="string", description="A greeting with the first name.")]


@hookimpl
def customers_changed(context: PluginContext, customer_ids: Sequence[str]) -> None:
    for customer in context.get_customers(customer_ids):
        context.set_traits(customer.id, {"hello.greeting": greeting(customer.first_name)}, producer=PRODUCER)


@hookimpl
def register_commands() -> list[CommandInfo]:
    import typer

    from cxbridge.hooktypes import CommandInfo

    app = typer.Typer(help="Say hello (the example plugin).")

    @app.command()
    def hello(name: str = typer.Option("world", "--name", help="Whom to greet.")) -> None:
        """Print a greeting."""
        typer.echo(greeting(name))

    return [CommandInfo(name="hello", app=app, help="Say hello (example plugin).")]
