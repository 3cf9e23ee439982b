"""``cxbridge outbox list|dead|retry|send``: the write-back outbox."""

from __future__ import annotations

import json
from typing import Any

import typer

from .context import get_state

__all__ = ["register"]

outbox_app = typer.Typer(
    help="The write-back outbox: pending, sent and dead-lettered CRM writes.", no_args_is_help=True
)


def _store(ctx: typer.Context) -> Any:
    from ..store import open_store

    config = get_state(ctx).load_config()
    return open_store(config.store.url, base_dir=config.workspace)


def _show(items: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(items, default=str, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in (
        "id",
        "status",
        "source",
        "object",
        "action",
        "record",
        "fields",
        "attempts",
        "next / sent",
        "last error",
    ):
        table.add_column(name, overflow="fold")
    for item in items:
        when = item["sent_at"] if item["status"] == "sent" else item["next_attempt_at"]
        table.add_row(
            str(item["id"]),
            item["status"],
            item["source"],
            item["object_type"],
            item["action"],
            item["source_id"] or item["result_id"] or "-",
            json.dumps(item["fields"], default=str)[:80],
            str(item["attempts"]),
            when.strftime("%Y-%m-%d %H:%M:%S") if when else "-",
            (item["last_error"] or "")[:120],
        )
    Console().print(table)


@outbox_app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: str = typer.Option(None, "--status", help="pending | sent | dead | skipped"),
    source: str = typer.Option(None, "--source", help="Only writes to this source."),
    limit: int = typer.Option(50, "--limit", min=1, help="Show at most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List outbox items, newest first."""
    from ..errors import ConfigError
    from ..outbox import count_by_status, list_items
    from ..outbox.admin import STATUSES

    if status is not None and status not in STATUSES:
        raise ConfigError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}", key="--status")
    with _store(ctx) as store, store.connect() as conn:
        items = list_items(conn, status=status, source=source, limit=limit)
        counts = count_by_status(conn, source=source)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    _show(items, as_json, f"outbox ({summary})")


@outbox_app.command("dead")
def dead_cmd(
    ctx: typer.Context,
    source: str = typer.Option(None, "--source", help="Only writes to this source."),
    limit: int = typer.Option(50, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List dead-lettered writes with the reason (retry them with `cxbridge outbox retry`)."""
    from ..outbox import list_items

    with _store(ctx) as store, store.connect() as conn:
        items = list_items(conn, status="dead", source=source, limit=limit)
    _show(items, as_json, f"dead letters ({len(items)})")


@outbox_app.command("retry")
def retry_cmd(
    ctx: typer.Context,
    ids: list[int] = typer.Argument(None, help="Outbox item ids."),
    all_dead: bool = typer.Option(False, "--all-dead", help="Re-queue every dead letter."),
    source: str = typer.Option(None, "--source", help="With --all-dead: only this source."),
) -> None:
    """Re-queue dead (or waiting) writes: attempts reset, sent with the next delivery."""
    from ..errors import ConfigError
    from ..outbox import retry_items
    from ..store.ops import utcnow

    if not ids and not all_dead:
        raise ConfigError("name outbox item ids or use --all-dead", key="ids")
    with _store(ctx) as store, store.begin() as conn:
        try:
            count = retry_items(conn, ids=ids or (), all_dead=all_dead, source=source, now=utcnow())
        except ValueError as exc:
            raise ConfigError(str(exc), key="ids") from None
    typer.echo(f"re-queued {count} outbox item(s)")


@outbox_app.command("send")
def send_cmd(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(None, help="Sources to deliver to (default: every enabled source)."),
    max_attempts: int = typer.Option(5, "--max-attempts", min=1),
) -> None:
    """Deliver due writes now (the daemon and `cxbridge sync` do this by themselves)."""
    from ..errors import ConfigError
    from ..outbox import deliver
    from ..sources import build_adapter

    state = get_state(ctx)
    config = state.load_config()
    pm = state.plugin_manager()
    names = list(sources) if sources else list(config.enabled_sources())
    for name in names:
        if name not in config.sources:
            raise ConfigError(f"unknown source {name!r}", key=f"sources.{name}")
    with _store(ctx) as store:
        adapters = {name: build_adapter(config, name, pm=pm, store=store) for name in names}
        try:
            report = deliver(store, adapters, pm=pm, max_attempts=max_attempts)
        finally:
            for adapter in adapters.values():
                adapter.close()
    calls = sum(report.write_calls.values())
    typer.echo(
        f"sent {report.sent}, to retry {report.retried}, dead {report.dead}, held {report.held}, "
        f"skipped {report.skipped} ({calls} write calls)"
    )
    if report.dead or report.retried:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``outbox`` to the root app."""
    app.add_typer(outbox_app, name="outbox")
