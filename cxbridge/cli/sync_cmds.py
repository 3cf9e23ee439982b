"""``cxbridge sync``, ``cxbridge status`` and ``cxbridge quarantine list|replay|discard``."""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from .context import get_state

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..sync import SyncEngine

__all__ = ["register"]

quarantine_app = typer.Typer(help="Records that could not be synced, with the reason.", no_args_is_help=True)


@contextmanager
def _engine(ctx: typer.Context, sources: list[str] | None = None) -> Iterator[SyncEngine]:
    from ..errors import ConfigError
    from ..sources import build_adapter
    from ..store import open_store
    from ..sync import SyncEngine

    state = get_state(ctx)
    config = state.load_config()
    pm = state.plugin_manager()
    for name in sources or ():
        if name not in config.sources:
            raise ConfigError(
                f"unknown source {name!r}; configured: {', '.join(config.sources) or 'none'}",
                key=f"sources.{name}",
            )
    store = open_store(config.store.url, base_dir=config.workspace)
    names = list(sources) if sources else list(config.enabled_sources())
    adapters = {}
    try:
        for name in names:
            adapters[name] = build_adapter(config, name, pm=pm, store=store)
        yield SyncEngine(store, config, pm, adapters)
    finally:
        for adapter in adapters.values():
            adapter.close()
        store.close()


def sync(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(None, help="Sources to sync (default: every enabled source)."),
    full: bool = typer.Option(False, "--full", help="Read everything and reconcile deletions."),
    writeback: bool = typer.Option(True, "--writeback/--no-writeback", help="Deliver the outbox afterwards."),
) -> None:
    """Sync sources into the store: read changes, resolve identities, run plugins, plan write-backs."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with _engine(ctx, sources or None) as engine:
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda *_: engine.stop())  # finish the page, commit, stop
        tasks: dict[str, Any] = {}
        try:
            with Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=10),
                TextColumn(
                    "{task.fields[records]:>9,} rec {task.fields[pages]:>5} pg "
                    "{task.fields[rate]:>7,.0f}/s {task.fields[status]}"
                ),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            ) as progress:

                def report(event: str, run: Any) -> None:
                    key = f"{run.source}/{run.stream}"
                    if event == "start":
                        tasks[key] = progress.add_task(
                            key, total=None, records=0, pages=0, rate=0.0, status="running"
                        )
                        return
                    elapsed = max((engine.now() - run.started_at).total_seconds(), 1e-6)
                    fields = {
                        "records": run.records_read,
                        "pages": run.pages,
                        "rate": run.records_read / elapsed,
                        "status": run.status,
                    }
                    if event == "end":
                        progress.update(tasks[key], total=1, completed=1, **fields)
                    else:
                        progress.update(tasks[key], advance=0, **fields)

                results = engine.run(sources or None, full=full, progress=report)
            delivery = None
            if writeback and not engine.stopping:
                from ..outbox import deliver

                delivery = deliver(engine.store, engine.adapters, pm=engine.pm)
        finally:
            signal.signal(signal.SIGTERM, previous)
    _summary(results, delivery)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


def _summary(results: list[Any], delivery: Any) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sync summary", box=box.SIMPLE_HEAD, padding=(0, 1))
    for col in ("source", "stream", "status", "read", "changed", "quarant.", "pages", "calls", "s"):
        table.add_column(col, justify="right" if col not in ("source", "stream", "status") else "left",
                         no_wrap=True)
    colors = {"succeeded": "green", "failed": "red", "stopped": "yellow"}
    for r in results:
        seconds = (r.finished_at - r.started_at).total_seconds() if r.finished_at else 0.0
        table.add_row(
            r.source,
            r.stream,
            f"[{colors.get(r.status, 'white')}]{r.status}[/]",
            f"{r.records_read:,}",
            f"{r.records_changed:,}",
            f"{r.records_quarantined:,}",
            str(r.pages),
            str(r.api_calls),
            f"{seconds:.1f}",
        )
    # Not a terminal (CI logs, pipes): rich would assume 80 columns and cut the table's words.
    console = Console() if sys.stdout.isatty() else Console(width=max(Console().width, 120))
    console.print(table)
    for r in results:
        if r.error:
            console.print(f"[red]{r.source}/{r.stream}[/]: {r.error}")
    if delivery is not None:
        console.print("write-back: " + ", ".join(
            f"{name} {getattr(delivery, name)}" for name in ("sent", "retried", "dead", "held", "skipped")
            if hasattr(delivery, name)))


def status(ctx: typer.Context) -> None:
    """Last run per stream, cursors, open quarantine, plugin failures and the outbox."""
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy import func, select

    from ..store import open_store
    from ..store import schema as s
    from ..sync import quarantine, runs

    config = get_state(ctx).load_config()
    console = Console()
    with open_store(config.store.url, base_dir=config.workspace) as store, store.connect() as conn:
        open_q = quarantine.counts(conn)
        table = Table(title="streams")
        for col in (
            "source",
            "stream",
            "status",
            "started",
            "read",
            "changed",
            "quarantined (open)",
            "cursor",
            "error",
        ):
            table.add_column(col)
        for r in runs.last_runs(conn):
            cursor = (r.cursor_after or {}).get("modstamp") or "-"
            table.add_row(
                r.source,
                r.stream,
                r.status,
                r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                f"{r.records_read:,}",
                f"{r.records_changed:,}",
                f"{r.records_quarantined:,} ({open_q.get((r.source, r.stream), 0)})",
                str(cursor),
                (r.error or "")[:80],
            )
        console.print(table)
        pf = s.plugin_failures
        failures = conn.execute(
            select(pf.c.plugin, pf.c.hook, func.count(), func.max(pf.c.at)).group_by(pf.c.plugin, pf.c.hook)
        ).all()
        if failures:
            ft = Table(title="plugin failures")
            for col in ("plugin", "hook", "count", "last"):
                ft.add_column(col)
            for plugin, hook, count, last in failures:
                ft.add_row(plugin, hook, str(count), str(last))
            console.print(ft)
        ob = s.outbox
        counts: dict[str, int] = dict(conn.execute(select(ob.c.status, func.count()).group_by(ob.c.status)).all())
        console.print("outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"))
        console.print(f"quarantine: {sum(open_q.values())} open")
        pending = conn.execute(select(func.count()).select_from(s.erasure_pending)).scalar_one()
        if pending:
            console.print(f"erasures: {pending} CRM record(s) of forgotten people still to erase "
                          "(cxbridge erasures list|retry)")


@quarantine_app.command("list")
def quarantine_list(
    ctx: typer.Context,
    source: str = typer.Option(None, help="Only this source."),
    status_: str = typer.Option("open", "--status", help="open, replayed, discarded, superseded or all."),
    limit: int = typer.Option(100, help="At most this many rows."),
) -> None:
    """List quarantined records with the reason."""
    from rich.console import Console
    from rich.table import Table

    from ..store import open_store
    from ..sync import quarantine

    config = get_state(ctx).load_config()
    with open_store(config.store.url, base_dir=config.workspace) as store, store.connect() as conn:
        items = quarantine.list_items(
            conn, status=None if status_ == "all" else status_, source=source, limit=limit
        )
    table = Table(title=f"quarantine ({status_})")
    for col in ("id", "source", "stream", "record", "reason", "status", "at"):
        table.add_column(col)
    for i in items:
        table.add_row(
            str(i.id),
            i.source,
            i.stream,
            i.source_id or "-",
            i.reason,
            i.status,
            i.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    Console().print(table)


@quarantine_app.command("replay")
def quarantine_replay(
    ctx: typer.Context,
    ids: list[int] = typer.Argument(None, help="Quarantine ids (see `cxbridge quarantine list`)."),
    all_: bool = typer.Option(False, "--all", help="Replay every open record."),
) -> None:
    """Re-run quarantined records through the current mapping (after fixing the config or the source)."""
    if not ids and not all_:
        raise typer.BadParameter("give quarantine ids or --all")
    with _engine(ctx) as engine:
        report = engine.replay(None if all_ else ids)
    typer.echo(f"replayed {len(report.replayed)}; still failing {len(report.still_failing)}")
    for qid, reason in sorted(report.still_failing.items()):
        typer.echo(f"  {qid}: {reason}")
    if report.still_failing:
        raise typer.Exit(1)


@quarantine_app.command("discard")
def quarantine_discard(
    ctx: typer.Context,
    ids: list[int] = typer.Argument(None, help="Quarantine ids."),
    all_: bool = typer.Option(False, "--all", help="Discard every open record."),
) -> None:
    """Give up on quarantined records (they stay listed with status 'discarded')."""
    from ..store import open_store
    from ..store.ops import utcnow
    from ..sync import quarantine

    if not ids and not all_:
        raise typer.BadParameter("give quarantine ids or --all")
    config = get_state(ctx).load_config()
    with open_store(config.store.url, base_dir=config.workspace) as store, store.begin() as conn:
        chosen = [i.id for i in quarantine.list_items(conn, status="open", ids=None if all_ else ids)]
        quarantine.mark(conn, chosen, "discarded", utcnow())
    typer.echo(f"discarded {len(chosen)}")


def register(app: typer.Typer) -> None:
    """Add ``sync``, ``status`` and ``quarantine`` to the root app."""
    app.command("sync")(sync)
    app.command("status")(status)
    app.add_typer(quarantine_app, name="quarantine")
