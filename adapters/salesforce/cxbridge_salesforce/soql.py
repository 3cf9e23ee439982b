"""SOQL text for the queries the adapter issues, and parsing of Salesforce date-times.

SOQL date-time literals are unquoted ISO 8601 in UTC (``2024-05-01T10:00:00Z``); string literals are single
quoted with backslash escapes (SOQL and SOSL Reference, "Date Formats and Date Literals", "Quoted String
Escape Sequences").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = ["format_datetime", "keyset_query", "parse_datetime", "quote"]


def quote(value: str) -> str:
    """A SOQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def format_datetime(value: datetime) -> str:
    """A SOQL date-time literal (UTC, seconds precision -- SystemModstamp has no sub-second part)."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: str | None) -> datetime | None:
    """Parse REST (``2024-05-01T10:00:00.000+0000``) and Bulk CSV (``...000Z``) date-times to aware UTC."""
    if not value:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def keyset_query(
    object_type: str,
    fields: Sequence[str],
    *,
    after: datetime | None,
    after_id: str | None,
    until: datetime | None = None,
) -> str:
    """The incremental query: rows after ``(after, after_id)`` in ``(SystemModstamp, Id)`` order.

    With ``after_id`` the keyset is exclusive of that exact row and inclusive of later ids at the same stamp
    (``SystemModstamp > m OR (SystemModstamp = m AND Id > id)``), so many rows sharing one timestamp are
    neither repeated nor skipped across pages and runs. Without ``after_id`` (a look-back start) the stamp is
    inclusive (``SystemModstamp >= m``).
    """
    where: list[str] = []
    if after is not None:
        stamp = format_datetime(after)
        if after_id:
            where.append(f"(SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > {quote(after_id)}))")
        else:
            where.append(f"SystemModstamp >= {stamp}")
    if until is not None:
        where.append(f"SystemModstamp <= {format_datetime(until)}")
    text = f"SELECT {', '.join(fields)} FROM {object_type}"
    if where:
        text += " WHERE " + " AND ".join(where)
    return text + " ORDER BY SystemModstamp ASC, Id ASC"
