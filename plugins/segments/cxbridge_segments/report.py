"""``cxbridge segments report``: distribution per RFM segment and tier, revenue share, terminal and HTML charts.

The report reads the segment traits stored on the golden customers (what the CRMs see), not a fresh
computation; run ``cxbridge segments refit`` first to refresh them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cxbridge.hooktypes import PluginContext
from cxbridge.models import Customer

__all__ = ["Group", "ReportData", "build_report", "render_html", "render_terminal"]

NO_PURCHASES = "No purchases"
NOT_SCORED = "Not scored"


@dataclass
class Group:
    """Customers and value of one segment or tier."""

    name: str
    customers: int = 0
    revenue: float = 0.0
    clv: float = 0.0


@dataclass
class ReportData:
    """Everything the report shows."""

    generated_at: datetime
    currency: str
    customers: int = 0
    revenue: float = 0.0
    segments: dict[str, Group] = field(default_factory=dict)
    tiers: dict[str, Group] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    def share(self, group: Group, of: str = "customers") -> float:
        total = self.customers if of == "customers" else self.revenue
        value = group.customers if of == "customers" else group.revenue
        return value / total if total else 0.0


def _add(groups: dict[str, Group], name: str, revenue: float, clv: float) -> None:
    group = groups.setdefault(name, Group(name))
    group.customers += 1
    group.revenue += revenue
    group.clv += clv


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(float(value)) else 0.0


def build_report(
    customers: Iterable[Customer], *, currency: str, generated_at: datetime,
    segment_order: Iterable[str] = (), tier_order: Iterable[str] = (), model: dict[str, Any] | None = None,
) -> ReportData:
    """Aggregate the segment traits of ``customers``."""
    data = ReportData(generated_at=generated_at, currency=currency, model=dict(model or {}))
    for name in segment_order:
        data.segments[name] = Group(name)
    for name in tier_order:
        data.tiers[name] = Group(name)
    for customer in customers:
        data.customers += 1
        revenue = _number(customer.trait("segments.revenue"))
        clv = _number(customer.trait("segments.clv"))
        data.revenue += revenue
        tier = customer.trait("segments.tier")
        if tier is None:
            segment = NOT_SCORED
        else:
            segment = customer.trait("segments.rfm_segment") or NO_PURCHASES
        _add(data.segments, segment, revenue, clv)
        _add(data.tiers, str(tier) if tier is not None else NOT_SCORED, revenue, clv)
        for name, trait in customer.traits.items():
            if name.startswith("segments.rule.") and trait.value is True:
                rule = name.removeprefix("segments.rule.")
                data.rules[rule] = data.rules.get(rule, 0) + 1
    return data


def report_from_context(context: PluginContext) -> ReportData:
    """Build the report over every live customer of the context's store."""
    from .pipeline import settings_of
    from .state import get_state

    settings = settings_of(context)
    state = get_state(context, settings)

    def every() -> Iterable[Customer]:
        for batch in context.iter_customers(batch_size=5000):
            yield from batch

    return build_report(
        every(), currency=settings.reporting_currency, generated_at=context.now,
        segment_order=list(settings.rfm.segment_map), tier_order=[t.name for t in settings.tiers.levels],
        model=state.as_dict() if state is not None else None,
    )


def _visible(groups: dict[str, Group]) -> list[Group]:
    return [g for g in groups.values() if g.customers or g.name not in (NO_PURCHASES, NOT_SCORED)]


def render_terminal(data: ReportData, console: Any, width: int = 30) -> None:
    """Print tables with bar charts (rich)."""
    from rich.table import Table

    for title, groups in (("RFM segments", data.segments), ("Value tiers", data.tiers)):
        table = Table(title=f"{title} — {data.customers} customers, revenue {data.revenue:,.2f} {data.currency}")
        table.add_column("Group")
        table.add_column("Customers", justify="right")
        table.add_column("% customers", justify="right")
        table.add_column("Revenue", justify="right")
        table.add_column("% revenue", justify="right")
        table.add_column("Share of customers")
        for group in _visible(groups):
            share = data.share(group)
            bar = "█" * round(share * width) or ("▏" if group.customers else "")
            table.add_row(group.name, f"{group.customers:,}", f"{share:.1%}", f"{group.revenue:,.2f}",
                          f"{data.share(group, 'revenue'):.1%}", f"[cyan]{bar}[/cyan]")
        console.print(table)
    if data.rules:
        rules = Table(title="Rule segments")
        rules.add_column("Rule")
        rules.add_column("Members", justify="right")
        for name, count in sorted(data.rules.items()):
            rules.add_row(name, f"{count:,}")
        console.print(rules)


def _svg_bars(groups: list[Group], values: list[float], total: float, *, unit: str, colour: str) -> str:
    row, label_w, bar_w = 22, 150, 360
    height = row * len(groups) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 120}" height="{height}" '
             f'role="img" aria-label="{html.escape(unit)}">']
    for i, (group, value) in enumerate(zip(groups, values, strict=True)):
        share = value / total if total else 0.0
        y = 5 + i * row
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">'
                     f"{html.escape(group.name)}</text>")
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(share * bar_w, 0):.1f}" height="{row - 6}" '
                     f'fill="{colour}"><title>{html.escape(group.name)}: {value:,.2f} {html.escape(unit)}'
                     "</title></rect>")
        parts.append(f'<text x="{label_w + max(share * bar_w, 0) + 6:.1f}" y="{y + 15}" font-size="12">'
                     f"{share:.1%}</text>")
    parts.append("</svg>")
    return "".join(parts)


def render_html(data: ReportData) -> str:
    """A self-contained HTML page (inline CSS and SVG, no scripts, no external resources)."""
    sections = []
    for title, groups_map in (("RFM segments", data.segments), ("Value tiers", data.tiers)):
        groups = _visible(groups_map)
        rows = "".join(
            f"<tr><td>{html.escape(g.name)}</td><td>{g.customers:,}</td><td>{data.share(g):.1%}</td>"
            f"<td>{g.revenue:,.2f}</td><td>{data.share(g, 'revenue'):.1%}</td><td>{g.clv:,.2f}</td></tr>"
            for g in groups
        )
        customers_svg = _svg_bars(groups, [float(g.customers) for g in groups], float(data.customers),
                                  unit="customers", colour="#3b82f6")
        revenue_svg = _svg_bars(groups, [g.revenue for g in groups], data.revenue,
                                unit=data.currency, colour="#10b981")
        sections.append(
            f"<section><h2>{title}</h2><table><thead><tr><th>Group</th><th>Customers</th><th>% customers</th>"
            f"<th>Revenue ({html.escape(data.currency)})</th><th>% revenue</th><th>CLV</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            f"<div class=charts><figure>{customers_svg}<figcaption>Share of customers</figcaption></figure>"
            f"<figure>{revenue_svg}<figcaption>Share of revenue</figcaption></figure></div></section>"
        )
    if data.rules:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:,}</td></tr>" for k, v in sorted(data.rules.items()))
        sections.append(f"<section><h2>Rule segments</h2><table><thead><tr><th>Rule</th><th>Members</th></tr>"
                        f"</thead><tbody>{rows}</tbody></table></section>")
    if data.model:
        items = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>"
                        for k, v in data.model.items() if k != "diagnostics")
        sections.append(f"<section><h2>Model</h2><ul>{items}</ul></section>")
    style = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#111}table{border-collapse:collapse}"
             "td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}td:first-child,th:first-child"
             "{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:2rem}figcaption{font-size:12px;color:#555}")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>cxbridge segments report</title>"
        f"<style>{style}</style></head><body><h1>Customer segments</h1>"
        f"<p>{data.customers:,} customers, revenue {data.revenue:,.2f} {html.escape(data.currency)}, "
        f"generated {html.escape(data.generated_at.isoformat())}</p>{''.join(sections)}</body></html>"
    )
