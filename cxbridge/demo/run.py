"""``cxbridge demo``: create a workspace with two seeded local CRMs, sync, resolve, score, write back, show.

The output is deterministic: the data come from seeded generators, scoring runs "as of" a fixed date, and the
summary prints no golden ids or timings (those differ per run by nature).
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from ..errors import ConfigError
from . import data

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pluggy
    from rich.console import Console

    from ..bridge import Bridge

__all__ = ["DemoResult", "prepare_workspace", "run_demo"]

MARKER = ".cxbridge-demo"
_GENERATED = ("cxbridge.toml", "cxbridge.db", "cxbridge.db-wal", "cxbridge.db-shm", "shop.db", "callcentre")


@dataclass
class DemoResult:
    """What the demo did (tests assert on it)."""

    workspace: Path
    runs: list[Any] = field(default_factory=list)
    second_runs: list[Any] = field(default_factory=list)
    delivery: Any = None
    status: dict[str, Any] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    tiers: dict[str, int] = field(default_factory=dict)
    sample_email: str | None = None
    shop_written: dict[str, int] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    job_failures: dict[str, str] = field(default_factory=dict)


def prepare_workspace(directory: Path, pm: pluggy.PluginManager) -> Path:
    """(Re)create the demo workspace: seed data and config. Returns the config path.

    Refuses to touch a non-empty folder that is not a demo workspace.
    """
    directory = directory.resolve()
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is a file, not a folder; choose another demo folder")
    if directory.exists() and any(directory.iterdir()) and not (directory / MARKER).exists():
        raise ConfigError(f"{directory} is not empty and not a cxbridge demo workspace; choose another folder")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("created by `cxbridge demo`; safe to delete\n", encoding="utf-8")
    for name in _GENERATED:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    population = data.people()
    data.write_shop(directory / "shop.db", population)
    data.write_callcentre(directory / "callcentre", population)

    from ..plugins import collect_adapters, collect_settings

    adapters = collect_adapters(pm)
    missing = [name for name in ("local-sql", "local-files") if name not in adapters]
    if missing:
        raise ConfigError(
            f"the demo needs the local CRM adapters ({', '.join(missing)} not installed): "
            'pip install "cxbridge[local]" (or run `make demo`)'
        )
    text = files("cxbridge.demo").joinpath("cxbridge.toml").read_text(encoding="utf-8")
    if "segments" in collect_settings(pm):
        text += files("cxbridge.demo").joinpath("segments.toml").read_text(encoding="utf-8")
    config_path = directory / "cxbridge.toml"
    config_path.write_text(text.replace("{workspace}", directory.as_posix()), encoding="utf-8")
    return config_path


def _trait_counts(bridge: Bridge, name: str) -> dict[str, int]:
    from ..store import schema as s

    with bridge.store.connect() as conn:
        rows = conn.execute(select(s.traits.c.value).where(s.traits.c.name == name)).scalars()
        counts = Counter("(none)" if v is None else str(v) for v in rows)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _sample_customer(bridge: Bridge) -> str | None:
    """The customer known to both CRMs with the most interactions (ties: smallest email): deterministic."""
    from ..store import schema as s

    links, inter, cust = s.source_links, s.interactions, s.customers
    with bridge.store.connect() as conn:
        multi = (
            select(links.c.customer_id)
            .where(links.c.customer_id.is_not(None))
            .group_by(links.c.customer_id)
            .having(func.count(func.distinct(links.c.source)) > 1)
            .subquery()
        )
        counts = (
            select(inter.c.customer_id, func.count().label("n"))
            .where(inter.c.deleted.is_(False))
            .group_by(inter.c.customer_id)
            .subquery()
        )
        row = conn.execute(
            select(cust.c.primary_email)
            .join(multi, multi.c.customer_id == cust.c.id)
            .join(counts, counts.c.customer_id == cust.c.id)
            .where(cust.c.primary_email.is_not(None))
            .order_by(counts.c.n.desc(), cust.c.primary_email)
            .limit(1)
        ).first()
    return row.primary_email if row else None


def _shop_written(workspace: Path) -> dict[str, int]:
    import sqlite3

    db = sqlite3.connect(workspace / "shop.db")
    try:
        segment = db.execute("SELECT count(*) FROM customers WHERE cx_segment IS NOT NULL").fetchone()[0]
        tier = db.execute("SELECT count(*) FROM customers WHERE cx_tier IS NOT NULL").fetchone()[0]
    finally:
        db.close()
    return {"cx_segment": segment, "cx_tier": tier}


def _run_jobs(bridge: Bridge) -> tuple[list[str], dict[str, str]]:
    """Run every registered plugin job once (in name order); a job that raises is reported, not fatal."""
    from ..plugins import collect_jobs

    ran: list[str] = []
    failures: dict[str, str] = {}
    for name, job in sorted(collect_jobs(bridge.pm).items()):
        context = bridge.context()
        try:
            job.func(context)
            context.flush()
        except Exception as exc:  # a plugin's job must not stop the demo
            logger.warning("demo: job %s failed: %s", name, exc)
            failures[name] = f"{type(exc).__name__}: {exc}"
        else:
            ran.append(name)
    return ran, failures


def run_demo(directory: Path, *, pm: pluggy.PluginManager, console: Console | None = None) -> DemoResult:
    """Create the workspace, sync both CRMs, deliver write-backs, sync again (nothing is re-done), report."""
    from ..bridge import Bridge

    config_path = prepare_workspace(directory, pm)
    result = DemoResult(workspace=config_path.parent)
    with Bridge.from_config(config_path, pm=pm) as bridge:
        result.runs = bridge.sync()
        # What the daemon would do next: the plugins' periodic jobs (model refits...) over the synced data.
        result.jobs, result.job_failures = _run_jobs(bridge)
        result.delivery = bridge.deliver_writes()
        # The shop now shows our writes as changes; the next sync must recognise them as our own.
        result.second_runs = bridge.sync()
        result.status = bridge.status()
        result.segments = _trait_counts(bridge, "segments.rfm_segment")
        result.tiers = _trait_counts(bridge, "segments.tier")
        result.sample_email = _sample_customer(bridge)
        result.shop_written = _shop_written(result.workspace)
        if console is not None:
            _print(console, bridge, result)
    return result


def _print(console: Console, bridge: Bridge, result: DemoResult) -> None:
    from rich.table import Table

    from ..cli.render import customer_360_renderable

    console.rule("[bold]cxbridge demo")
    console.print(f"workspace: {result.workspace}")
    runs = Table(title="Sync (first run, then an incremental re-run)", title_justify="left")
    for col in ("source", "stream", "read", "changed", "quarantined", "re-run read", "re-run changed"):
        runs.add_column(col, justify="right" if col not in ("source", "stream") else "left")
    second = {(r.source, r.stream): r for r in result.second_runs}
    for r in result.runs:
        again = second.get((r.source, r.stream))
        runs.add_row(r.source, r.stream, str(r.records_read), str(r.records_changed), str(r.records_quarantined),
                     str(again.records_read if again else "-"), str(again.records_changed if again else "-"))
    console.print(runs)

    st = result.status
    summary = Table(title="Single customer view", title_justify="left", show_header=False)
    summary.add_row("golden customers", str(st["customers"]))
    summary.add_row("known to both CRMs (identities resolved)", str(st["customers_in_several_sources"]))
    for key, n in st["links"].items():
        summary.add_row(f"linked records {key}", str(n))
    summary.add_row("interactions", str(st["interactions"]))
    summary.add_row("traits computed", str(st["traits"]))
    summary.add_row("plugin jobs run", ", ".join(result.jobs) or "none")
    for name, error in result.job_failures.items():
        summary.add_row(f"job {name} FAILED", error)
    summary.add_row("quarantined records", str(st["quarantine_open"]))
    summary.add_row("write-backs sent / pending / dead",
                    " / ".join(str(st["outbox"].get(k, 0)) for k in ("sent", "pending", "dead")))
    if result.shop_written:
        summary.add_row("shop customers with cx_segment / cx_tier",
                        f"{result.shop_written['cx_segment']} / {result.shop_written['cx_tier']}")
    console.print(summary)

    if result.segments:
        seg = Table(title="RFM segments and value tiers", title_justify="left")
        seg.add_column("RFM segment")
        seg.add_column("customers", justify="right")
        for name, n in result.segments.items():
            seg.add_row(name, str(n))
        tiers = Table(title=None)
        tiers.add_column("tier")
        tiers.add_column("customers", justify="right")
        for name, n in result.tiers.items():
            tiers.add_row(name, str(n))
        from rich.columns import Columns

        console.print(Columns([seg, tiers]))

    if result.sample_email:
        console.print(f"\n360° view of a sample customer ({result.sample_email}):")
        view = bridge.customer(result.sample_email, interactions=10)
        console.print(customer_360_renderable(view, show_id=False))
    console.print(
        f"\nnext: cxbridge --config {result.workspace / 'cxbridge.toml'} customers search mueller\n"
        f"      cxbridge --config {result.workspace / 'cxbridge.toml'} status"
    )
