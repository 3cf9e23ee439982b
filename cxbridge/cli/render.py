"""Rich renderings shared by commands (the 360° view, customer lists)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

if TYPE_CHECKING:
    from ..bridge import Customer360
    from ..models import Customer

__all__ = ["customer_360_renderable", "customers_table"]

_ATTRIBUTES = (
    "first_name",
    "last_name",
    "full_name",
    "emails",
    "phones",
    "addresses",
    "organization_id",
    "demographics",
    "external_ids",
    "custom",
)


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    if hasattr(value, "model_dump"):
        data = value.model_dump(exclude_none=True, exclude_defaults=True)
        return ", ".join(f"{k}={v}" for k, v in data.items())
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)


def _origin(c: Customer, name: str) -> str:
    """Where a golden field came from: ``source/source_id``; nested fields list each source once."""
    prov = c.provenance.get(name)
    if prov is not None:
        return f"{prov.source}/{prov.source_id}"
    prefix = name + "."
    origins = [f"{p.source}/{p.source_id}" for key, p in sorted(c.provenance.items()) if key.startswith(prefix)]
    return ", ".join(dict.fromkeys(origins))


def customer_360_renderable(view: Customer360, *, show_id: bool = True) -> Group:
    """The 360° view as rich renderables: identities, attributes with provenance, consent, traits, timeline.

    Args:
        view: the view to render.
        show_id: show the golden id and the identities' last-modified stamps. Both differ from run to run by
            nature (ids are generated; a CRM stamps our own write-backs with its clock), so the demo, whose
            output must be deterministic, hides them.
    """
    c = view.customer
    title = escape(c.display_name) + (f"  [dim]{c.id}[/dim]" if show_id else "")

    identities = Table(title="Identities", expand=True, title_justify="left")
    columns = ["source", "object", "source id", "linked by"] + (["last modified"] if show_id else [])
    for col in columns:
        identities.add_column(col)
    for ident in view.identities:
        stamp = ident.modstamp.strftime("%Y-%m-%d %H:%M") if ident.modstamp else ""
        source_id = ident.source_id + (" (deleted)" if ident.deleted else "")
        cells = [ident.source, ident.object_type, source_id, ident.rule or ""] + ([stamp] if show_id else [])
        identities.add_row(*(escape(cell) for cell in cells))

    attributes = Table(title="Attributes (with provenance)", expand=True, title_justify="left")
    attributes.add_column("field")
    attributes.add_column("value")
    attributes.add_column("from")
    dumped = c.model_dump()
    for name in _ATTRIBUTES:
        value = getattr(c, name)
        if value in (None, [], {}) or (hasattr(value, "model_dump") and not _fmt(value)):
            continue
        attributes.add_row(name, escape(_fmt(value)) if name in dumped else "", escape(_origin(c, name)))

    consent = c.consent
    flags = [
        name
        for name in ("email_opt_out", "phone_opt_out", "sms_opt_out", "processing_opt_out", "erased")
        if getattr(consent, name)
    ]
    consent_line = "Consent: " + (
        ", ".join(
            f"{flag} (from {escape(origin)})" if (origin := _origin(c, f"consent.{flag}")) else flag
            for flag in flags
        )
        if flags
        else "no opt-outs"
    )

    traits = Table(title="Traits", expand=True, title_justify="left")
    traits.add_column("trait")
    traits.add_column("value")
    traits.add_column("by")
    for name, trait in sorted(c.traits.items()):
        value = trait.value
        if isinstance(value, float):
            value = f"{value:.2f}"
        traits.add_row(escape(name), escape(_fmt(value)), escape(trait.producer))

    timeline = Table(title=f"Interactions (latest {len(view.interactions)})", expand=True, title_justify="left")
    for col in ("when", "source", "channel", "type", "amount", "subject"):
        timeline.add_column(col)
    for i in view.interactions:
        amount = f"{i.amount:.2f} {i.currency or ''}".strip() if i.amount is not None else ""
        timeline.add_row(
            i.occurred_at.strftime("%Y-%m-%d"),
            escape(i.source),
            i.channel.value,
            i.type.value,
            escape(amount),
            escape((i.subject or i.content or "")[:60]),
        )
    parts: list[Any] = [identities, attributes, consent_line, traits, timeline]
    if view.open_writes:
        parts.append(f"{view.open_writes} write-back(s) pending in the outbox")
    return Group(Panel(Group(*parts), title=title, title_align="left"))


def customers_table(customers: list[Customer], *, title: str = "Customers") -> Table:
    table = Table(title=title)
    for col in ("id", "name", "email", "phone", "sources"):
        table.add_column(col, no_wrap=col in ("id", "email", "phone"))
    for c in customers:
        sources = sorted({link.source for link in c.links})
        table.add_row(
            c.id,
            escape(c.display_name),
            escape(c.emails[0]) if c.emails else "",
            c.phones[0] if c.phones else "",
            escape(", ".join(sources)),
        )
    return table


def print_renderable(renderable: Any) -> None:
    Console().print(renderable)
