"""Builders and an in-memory PluginContext for the segments plugin tests."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from cxbridge.models import Customer, Interaction, Trait
from cxbridge.testing import MemoryContext

AS_OF = datetime(2024, 6, 30, 12, tzinfo=UTC)
_ids = itertools.count(1)


class StoreLikeContext(MemoryContext):
    """MemoryContext whose customers carry the traits written so far, as customers read from the store do
    (the core keeps trait history; a re-read customer shows the current values)."""

    def set_traits(self, customer_id: str, values: Mapping[str, Any], *, producer: str) -> None:
        super().set_traits(customer_id, values, producer=producer)
        customer = self.customers[self._resolve(customer_id)]
        for name, value in values.items():
            customer.traits[name] = Trait(name=name, value=value, producer=producer, computed_at=self.now,
                                          type="string")


def customer(cid: str, **kw: Any) -> Customer:
    return Customer(id=cid, **kw)


def buy(
    cid: str, when: date | datetime | int, amount: float | str | None = 10.0, currency: str | None = "EUR",
    *, kind: str = "purchase",
) -> Interaction:
    """A purchase (or refund / other interaction); ``when`` as days before AS_OF or a date."""
    if isinstance(when, int):
        at = AS_OF - timedelta(days=when)
    elif isinstance(when, datetime):
        at = when
    else:
        at = datetime(when.year, when.month, when.day, 10, tzinfo=UTC)
    n = next(_ids)
    return Interaction(
        id=f"i{n}", customer_id=cid, source="shop", object_type="orders", source_id=str(n), type=kind,
        channel="web", occurred_at=at, amount=None if amount is None else Decimal(str(amount)),
        currency=currency,
    )
