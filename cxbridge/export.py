"""``cxbridge export``: golden records, interactions and identity links as JSON Lines or CSV.

For warehouses and audits: every golden customer with every linked source id; streamed in batches so memory
stays flat in the number of customers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import select, tuple_

from .errors import ConfigError
from .golden import load_customers
from .store import schema as s

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ["EXPORT_FORMATS", "EXPORT_KINDS", "check_export", "export"]

EXPORT_KINDS = ("customers", "interactions", "links")
EXPORT_FORMATS = ("jsonl", "csv")

_CUSTOMER_COLUMNS = [
    "id", "display_name", "first_name", "last_name", "emails", "phones", "organization_id", "country",
    "email_opt_out", "phone_opt_out", "processing_opt_out", "external_ids", "traits", "links", "aliases",
    "updated_at",
]
_INTERACTION_COLUMNS = [
    "id", "customer_id", "source", "object_type", "source_id", "channel", "type", "occurred_at", "direction",
    "amount", "currency", "subject", "sentiment",
]
_LINK_COLUMNS = ["customer_id", "source", "object_type", "source_id", "rule", "linked_at"]


def _customer_rows(conn: Connection, batch_size: int) -> Iterator[dict[str, Any]]:
    last = ""
    while True:
        ids = [
            r.id
            for r in conn.execute(
                select(s.customers.c.id)
                .where(s.customers.c.id > last, s.customers.c.erased.is_(False))
                .order_by(s.customers.c.id)
                .limit(batch_size)
            )
        ]
        if not ids:
            return
        last = ids[-1]
        for c in load_customers(conn, ids):
            yield {
                "id": c.id,
                "display_name": c.display_name,
                "first_name": c.first_name,
                "last_name": c.last_name,
                "emails": c.emails,
                "phones": c.phones,
                "organization_id": c.organization_id,
                "country": c.demographics.country,
                "email_opt_out": c.consent.email_opt_out,
                "phone_opt_out": c.consent.phone_opt_out,
                "processing_opt_out": c.consent.processing_opt_out,
                "external_ids": c.external_ids,
                "traits": {name: t.value for name, t in sorted(c.traits.items())},
                "links": [f"{lk.source}:{lk.object_type}:{lk.source_id}" for lk in c.links],
                "aliases": c.aliases,
                "updated_at": c.updated_at.isoformat() if c.updated_at else None,
            }


def _keyset(
    conn: Connection, table: Any, order: list[Any], columns: list[str], batch_size: int
) -> Iterator[dict[str, Any]]:
    offset_key: tuple[Any, ...] | None = None
    while True:
        query = select(table).order_by(*order).limit(batch_size)
        if offset_key is not None:
            query = query.where(tuple_(*order) > tuple_(*offset_key))
        rows = conn.execute(query).fetchall()
        if not rows:
            return
        offset_key = tuple(getattr(rows[-1], c.name) for c in order)
        for row in rows:
            out = {}
            for col in columns:
                value = getattr(row, col)
                out[col] = value.isoformat() if hasattr(value, "isoformat") else value
            yield out


def _rows(conn: Connection, kind: str, batch_size: int) -> tuple[list[str], Iterator[dict[str, Any]]]:
    if kind == "customers":
        return _CUSTOMER_COLUMNS, _customer_rows(conn, batch_size)
    if kind == "interactions":
        t = s.interactions
        wanted = [*_INTERACTION_COLUMNS, "deleted"]
        rows = (r for r in _keyset(conn, t, [t.c.id], wanted, batch_size) if not r["deleted"])
        return _INTERACTION_COLUMNS, ({k: r[k] for k in _INTERACTION_COLUMNS} for r in rows)
    t = s.source_links
    order = [t.c.source, t.c.object_type, t.c.source_id]
    return _LINK_COLUMNS, (r for r in _keyset(conn, t, order, _LINK_COLUMNS, batch_size) if r["customer_id"])


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None else value


def check_export(kind: str, fmt: str, batch_size: int = 1000) -> None:
    """Validate the arguments of :func:`export` (before anything is opened or written).

    :raises ConfigError: unknown kind or format (names the allowed values), batch size below 1.
    """
    if kind not in EXPORT_KINDS:
        raise ConfigError(f"unknown export {kind!r}; choose one of {', '.join(EXPORT_KINDS)}", key="export")
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}", key="--format")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}", key="batch_size")


def export(conn: Connection, kind: str, fmt: str, out: IO[str], *, batch_size: int = 1000) -> int:
    """Write ``kind`` rows to ``out`` in ``fmt``; return the number of rows.

    :raises ConfigError: unknown kind or format (names the allowed values).
    """
    check_export(kind, fmt, batch_size)
    columns, rows = _rows(conn, kind, batch_size)
    n = 0
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
            n += 1
        return n
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
        n += 1
    return n
