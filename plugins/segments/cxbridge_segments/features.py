"""Per-customer purchase features, computed column-wise with numpy.

Input is a flat table of monetary interactions (one row per purchase or refund, already converted into the
reporting currency); output is one row per customer. The same code serves a full refit over millions of
customers (:func:`compute_features` on arrays) and the incremental path for a batch of changed customers
(:func:`table_from_interactions` first).

Conventions (documented in the README):

- Time is in whole UTC days (``day`` = days since 1970-01-01). Purchases dated after ``as_of`` are ignored.
- A *purchase* is an interaction of type ``purchase`` with a non-negative (or missing) amount. A *refund* is an
  interaction of type ``refund`` (its amount counts negative whatever its sign) or a purchase with a negative
  amount. Refunds reduce monetary value; they do not count as purchases and do not move recency.
- RFM frequency counts purchases; BG/NBD counts purchase *days* (several orders on one day are one
  transaction, as in the CDNOW data), ``x`` = purchase days - 1.
- The Gamma-Gamma ``zbar`` is the average value of the repeat purchase days, net of refunds allocated pro rata
  to gross spend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
from numpy.typing import NDArray

from cxbridge.models import Interaction

from .money import FxTable

__all__ = [
    "CustomerFeatures", "PurchaseTable", "compute_features", "day_number", "table_from_interactions",
    "table_from_rows",
]

_EPOCH = date(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_DAY_BITS = 20  # day numbers < 2**20 (year 4840) share an int64 key with the customer index


def day_number(value: datetime | date) -> int:
    """Whole UTC days since 1970-01-01."""
    if isinstance(value, datetime):
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).date()
    return (value - _EPOCH).days


@dataclass
class PurchaseTable:
    """Monetary interactions, one row each.

    :param cust: customer index (0..n-1).
    :param day: UTC day number.
    :param amount: signed amount in the reporting currency (refunds negative).
    :param is_purchase: counts as a purchase (frequency, recency, BG/NBD).
    :param unknown_currency: the row's currency had no exchange rate (amount is 0).
    """

    cust: NDArray[np.int64]
    day: NDArray[np.int64]
    amount: NDArray[np.float64]
    is_purchase: NDArray[np.bool_]
    unknown_currency: NDArray[np.bool_]
    unknown_codes: dict[int, set[str]] | None = None


@dataclass
class CustomerFeatures:
    """Purchase features per customer (arrays of length ``n``). Days are UTC day numbers; -1 = none."""

    n: int
    purchases: NDArray[np.int64]
    first_day: NDArray[np.int64]
    last_day: NDArray[np.int64]
    net_value: NDArray[np.float64]
    gross_value: NDArray[np.float64]
    purchase_days: NDArray[np.int64]
    repeat_value: NDArray[np.float64]
    unknown_currency: NDArray[np.bool_]

    @property
    def has_purchases(self) -> NDArray[np.bool_]:
        return self.purchases > 0

    def subset(self, index: NDArray[np.int64]) -> CustomerFeatures:
        """The features of the customers at ``index`` (used by fits on a sample)."""
        return CustomerFeatures(
            n=int(index.size),
            **{name: getattr(self, name)[index] for name in _ARRAY_FIELDS},
        )


_ARRAY_FIELDS = (
    "purchases", "first_day", "last_day", "net_value", "gross_value", "purchase_days", "repeat_value",
    "unknown_currency",
)


def compute_features(table: PurchaseTable, n: int, as_of_day: int) -> CustomerFeatures:
    """Aggregate a :class:`PurchaseTable` into per-customer features, fully vectorised.

    Cost is one sort of the purchase rows' (customer, day) keys plus a few ``bincount`` / ``minimum.at`` passes.
    """
    keep = table.day <= as_of_day
    cust = table.cust[keep].astype(np.int64, copy=False)
    day = table.day[keep].astype(np.int64, copy=False)
    amount = table.amount[keep].astype(np.float64, copy=False)
    is_purchase = table.is_purchase[keep]

    net = np.bincount(cust, weights=amount, minlength=n).astype(np.float64)
    unknown = np.bincount(cust[table.unknown_currency[keep]], minlength=n) > 0

    pc = cust[is_purchase]
    pd_ = day[is_purchase]
    pa = amount[is_purchase]
    purchases = np.bincount(pc, minlength=n).astype(np.int64)
    gross = np.bincount(pc, weights=pa, minlength=n).astype(np.float64)

    # First / last purchase day by unbuffered min / max; distinct purchase days by one sort of
    # (customer, day) keys -- about 4x cheaper than np.unique(..., return_inverse=True) on 10M rows.
    first_day = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last_day = np.full(n, -1, dtype=np.int64)
    np.minimum.at(first_day, pc, pd_)
    np.maximum.at(last_day, pc, pd_)
    first_day[purchases == 0] = -1
    base = int(pd_.min()) if pd_.size else 0  # days before 1970 are negative; keys need non-negative days
    keys = np.sort((pc << _DAY_BITS) | (pd_ - base))
    distinct = keys[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else keys
    purchase_days = np.bincount(distinct >> _DAY_BITS, minlength=n).astype(np.int64)
    on_first = pd_ == first_day[pc]
    first_value = np.bincount(pc[on_first], weights=pa[on_first], minlength=n).astype(np.float64)

    # Repeat value net of refunds: refunds are allocated pro rata to gross spend.
    with np.errstate(divide="ignore", invalid="ignore"):
        net_share = np.where(gross > 0, net / gross, 0.0)
    repeat_value = (gross - first_value) * net_share
    return CustomerFeatures(
        n=n,
        purchases=purchases,
        first_day=first_day,
        last_day=last_day,
        net_value=net,
        gross_value=gross,
        purchase_days=purchase_days,
        repeat_value=repeat_value,
        unknown_currency=unknown,
    )


def table_from_interactions(
    customer_ids: Sequence[str], interactions: Mapping[str, Sequence[Interaction]], fx: FxTable
) -> PurchaseTable:
    """Build a :class:`PurchaseTable` from canonical interactions (purchases and refunds only).

    :param customer_ids: the customers, in index order.
    :param interactions: interactions per customer id (other types are ignored).
    """
    cust: list[int] = []
    days: list[int] = []
    amounts: list[float] = []
    purchase: list[bool] = []
    currencies: list[str | None] = []
    for index, cid in enumerate(customer_ids):
        for item in interactions.get(cid, ()):
            kind = item.type.value if hasattr(item.type, "value") else str(item.type)
            if kind not in ("purchase", "refund"):
                continue
            value = float(item.amount) if item.amount is not None else 0.0
            is_refund = kind == "refund" or value < 0
            cust.append(index)
            days.append(day_number(item.occurred_at))
            amounts.append(-abs(value) if is_refund else value)
            purchase.append(not is_refund)
            currencies.append(item.currency if item.amount is not None else fx.reporting_currency)
    converted, unknown = fx.convert(np.asarray(amounts, dtype=np.float64), currencies)
    codes: dict[int, set[str]] = {}
    for row in np.flatnonzero(unknown):
        codes.setdefault(cust[row], set()).add((currencies[row] or fx.default_currency).upper())
    return PurchaseTable(
        cust=np.asarray(cust, dtype=np.int64),
        day=np.asarray(days, dtype=np.int64),
        amount=converted,
        is_purchase=np.asarray(purchase, dtype=bool),
        unknown_currency=unknown,
        unknown_codes=codes,
    )


def table_from_rows(
    rows: Sequence[tuple[str, datetime, float | None, str | None, str]], fx: FxTable, offset: int = 0
) -> tuple[PurchaseTable, list[str]]:
    """Build a :class:`PurchaseTable` from a batch of the core's columnar interaction rows.

    :param rows: ``(customer_id, occurred_at, amount, currency, type)`` ordered by customer
        (``PluginContext.iter_interaction_rows``); types other than purchase and refund are ignored.
    :param offset: index of the batch's first customer (batches of a stream are numbered consecutively).
    :returns: the table (customer indexes from ``offset``) and the batch's customer ids in index order.
    """
    rows = [r for r in rows if r[4] in ("purchase", "refund")]
    if not rows:
        return table_from_interactions([], {}, fx), []
    cids, occurred, amounts, currencies, kinds = zip(*rows, strict=True)
    ids = np.asarray(cids)
    change = np.empty(ids.size, dtype=bool)
    change[0] = True
    np.not_equal(ids[1:], ids[:-1], out=change[1:])
    cust = np.cumsum(change) - 1 + offset
    # Aware UTC datetimes: their date is the UTC day.
    day = np.fromiter((d.toordinal() for d in occurred), dtype=np.int64, count=ids.size) - _EPOCH_ORDINAL
    missing = np.fromiter((a is None for a in amounts), dtype=bool, count=ids.size)
    value = np.fromiter((0.0 if a is None else a for a in amounts), dtype=np.float64, count=ids.size)
    refund = (np.asarray(kinds) == "refund") | (value < 0)
    signed = np.where(refund, -np.abs(value), value)
    # Currency codes to rates through a dict of the few distinct codes (np.unique on 10M Python strings would
    # sort them); a missing amount is taken to be in the reporting currency, as table_from_interactions does.
    index: dict[str | None, int] = {}
    code_idx = np.fromiter(
        (index.setdefault(fx.reporting_currency if m else c, len(index))
         for m, c in zip(missing.tolist(), currencies, strict=True)),
        dtype=np.int64, count=ids.size,
    )
    distinct = list(index)
    converted_codes, unknown_codes_mask = fx.convert(np.ones(len(distinct)), distinct)
    rates = np.where(unknown_codes_mask, 0.0, converted_codes)
    converted = signed * rates[code_idx]
    unknown = unknown_codes_mask[code_idx]
    unknown_codes: dict[int, set[str]] = {}
    for row in np.flatnonzero(unknown):
        code = distinct[int(code_idx[row])]
        unknown_codes.setdefault(int(cust[row]), set()).add((code or fx.default_currency).upper())
    table = PurchaseTable(cust=cust.astype(np.int64), day=day, amount=converted, is_purchase=~refund,
                          unknown_currency=unknown, unknown_codes=unknown_codes)
    return table, ids[change].tolist()
