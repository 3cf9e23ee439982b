"""The rich rendering of the 360° view and customer lists (what `customers show|search` and the demo print)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from rich.console import Console

from cxbridge.bridge import Customer360, SourceIdentity
from cxbridge.cli.render import customer_360_renderable, customers_table
from cxbridge.models import Customer, Interaction, Provenance, SourceLink, Trait

AT = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)


def _prov(source: str, sid: str) -> Provenance:
    return Provenance(source=source, object_type="customers", source_id=sid)


def _view() -> Customer360:
    customer = Customer(
        id="cus_X1",
        first_name="[bold]Eve[/bold]",
        last_name="Stone [/]",
        emails=["eve@example.com"],
        phones=["+49301234567"],
        external_ids={"erp_no": "K-1"},
        custom={"newsletter": 1},
        traits={"segments.tier": Trait(name="segments.tier", value="gold", producer="segments", computed_at=AT),
                "segments.clv": Trait(name="segments.clv", value=123.456, producer="segments",
                                              computed_at=AT)},
        links=[SourceLink(source="shop", object_type="customers", source_id="7")],
        provenance={"first_name": _prov("shop", "7"), "external_ids.erp_no": _prov("erp", "K-1"),
                    "custom.newsletter": _prov("shop", "7"), "consent.phone_opt_out": _prov("cc", "c9")},
    )
    customer.consent.phone_opt_out = True
    identities = [SourceIdentity("shop", "customers", "7", "new", AT, False, {}),
                  SourceIdentity("cc", "contacts", "c9", "email", AT, True, {})]
    timeline = [Interaction(id="i1", customer_id="cus_X1", source="shop", object_type="orders", source_id="o1",
                            channel="web", type="purchase", occurred_at=AT, amount=Decimal("12.5"),
                            currency="EUR", subject="[red]sale[/red]")]
    return Customer360(customer, identities, timeline, open_writes=2)


def _text(renderable: object) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_360_view_shows_identities_provenance_consent_traits_and_timeline() -> None:
    text = _text(customer_360_renderable(_view()))
    assert "[bold]Eve[/bold] Stone [/]" in text  # CRM text is shown literally, never as markup
    assert "cus_X1" in text and "2026-10-01 08:30" in text
    assert "c9 (deleted)" in text
    lines = {line.split("│")[2].strip(): line for line in text.splitlines() if line.count("│") >= 4}
    assert "erp/K-1" in lines["external_ids"]  # provenance of nested fields
    assert "shop/7" in lines["custom"]
    assert "phone_opt_out (from cc/c9)" in text
    assert "123.46" in text and "gold" in text
    assert "12.50 EUR" in text and "[red]sale[/red]" in text
    assert "2 write-back(s) pending" in text


def test_stable_rendering_hides_generated_ids_and_modstamps() -> None:
    text = _text(customer_360_renderable(_view(), show_id=False))
    assert "cus_X1" not in text
    assert "08:30" not in text and "last modified" not in text
    assert "2026-10-01" in text  # the interaction date is data, not a stamp of ours


def test_customers_table_keeps_ids_and_emails_whole_on_narrow_terminals() -> None:
    c = _view().customer
    console = Console(width=60, record=True, color_system=None)
    console.print(customers_table([c], title="1 customer"))
    text = console.export_text()
    assert "cus_X1" in text and "eve@example.com" in text and "+49301234567" in text
