"""Reading and binding change-column values portably (native timestamps, SQLite text, epoch numbers).

Keyset pagination compares the change column with the cursor's modstamp *in the database*, so the bound
value must compare the way the stored values do:

- PostgreSQL / MySQL / MariaDB ``timestamp``/``datetime`` columns: bound as ``datetime``; naive columns get
  naive UTC, ``timestamptz`` gets an aware value. (MySQL sessions are set to UTC, see :mod:`.sql`.)
- SQLite has no date type: values are text and compare as strings
  (https://www.sqlite.org/datatype3.html#date_and_time_datatype). The codec samples one stored value and
  renders the bound value in the same shape: ``T`` or space separator, always six fraction digits (the format
  SQLAlchemy writes) or fraction only when non-zero (Python's ``isoformat``), and a ``+00:00``/``Z`` suffix if
  present. Every row of a table must use one shape and UTC -- mixed offsets would not sort as times.
- Integer / numeric columns are epoch seconds, or milliseconds when the sampled value is larger than 1e11.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

__all__ = ["StampCodec", "to_utc"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_utc(value: datetime) -> datetime:
    """Aware UTC; naive values are taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StampCodec:
    """Converts one change column's values between the database and aware-UTC ``datetime``."""

    def __init__(self, column: sa.ColumnElement[Any], dialect: str) -> None:
        self.column = column
        ctype = getattr(column, "type", sa.types.NullType())
        self.kind: Literal["native", "text", "epoch"]
        if isinstance(ctype, sa.Integer | sa.Numeric | sa.Float) and not isinstance(ctype, sa.Boolean):
            self.kind = "epoch"
        elif dialect == "sqlite" or isinstance(ctype, sa.String):
            self.kind = "text"
        else:
            self.kind = "native"
        self.aware = bool(getattr(ctype, "timezone", False))
        # text shape (SQLAlchemy's own SQLite storage format until a sample says otherwise)
        self.sep = " "
        self.always_fraction = True
        self.suffix = ""
        self.millis = False
        self.detected = self.kind == "native"

    def expr(self, column: sa.ColumnElement[Any] | None = None) -> sa.ColumnElement[Any]:
        """The column as selected/compared: text columns are read raw so SQLAlchemy does not parse them."""
        col = self.column if column is None else column
        return sa.type_coerce(col, sa.String()) if self.kind == "text" else col

    def detect(self, conn: sa.Connection, table: sa.Table) -> None:
        """Learn the stored shape from one non-NULL value (no-op for native columns or once detected)."""
        if self.detected:
            return
        sample = conn.execute(
            sa.select(self.expr()).select_from(table).where(self.column.is_not(None)).limit(1)
        ).scalar()
        if sample is None:
            return
        self.learn(sample)
        self.detected = True

    def learn(self, sample: Any) -> None:
        if self.kind == "epoch" or isinstance(sample, int | float):
            self.kind = "epoch"
            self.millis = abs(float(sample)) > 1e11
            return
        text = str(sample)
        self.sep = "T" if len(text) > 10 and text[10] == "T" else " "
        self.always_fraction = (
            len(text) >= 26 and text[19:20] == "." and len(text[20:26]) == 6 and (text[20:26].isdigit())
        )
        if text.endswith("Z"):
            self.suffix = "Z"
        elif len(text) > 19 and text[-6:-5] in "+-" and text[-3:-2] == ":":
            self.suffix = "+00:00"
        else:
            self.suffix = ""

    def to_db(self, value: datetime) -> Any:
        """Render an aware datetime the way the column stores it."""
        utc = to_utc(value)
        if self.kind == "native":
            return utc if self.aware else utc.replace(tzinfo=None)
        if self.kind == "epoch":
            seconds = (utc - EPOCH).total_seconds()
            return round(seconds * 1000) if self.millis else seconds
        base = utc.strftime(f"%Y-%m-%d{self.sep}%H:%M:%S")
        if self.always_fraction or utc.microsecond:
            base += f".{utc.microsecond:06d}"
        return base + self.suffix

    def param(self, value: datetime) -> Any:
        """:meth:`to_db` as a value for INSERT/UPDATE (text is bound as text, bypassing SQLite DateTime)."""
        raw = self.to_db(value)
        return sa.literal(raw, sa.String()) if self.kind == "text" else raw

    def from_db(self, value: Any) -> datetime | None:
        """Parse a stored value into aware UTC (``None`` stays ``None``)."""
        if value is None:
            return None
        if isinstance(value, datetime):
            return to_utc(value)
        if isinstance(value, int | float) or self.kind == "epoch":
            seconds = float(value) / (1000 if self.millis else 1)
            return datetime.fromtimestamp(seconds, tz=UTC)
        return to_utc(datetime.fromisoformat(str(value)))
