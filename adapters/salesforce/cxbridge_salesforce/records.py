"""Turning Salesforce rows (REST JSON or Bulk CSV) into :class:`~cxbridge.models.SourceRecord` objects."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from cxbridge.errors import RecordError
from cxbridge.models import SourceRecord

from .soql import parse_datetime
from .streams import derive_fields

__all__ = ["KEY_PREFIXES", "convert_csv_value", "csv_converter", "to_record"]

log = logging.getLogger(__name__)

#: Key prefixes of standard objects (first three characters of an Id), to type polymorphic WhoId / WhatId.
KEY_PREFIXES = {"001": "Account", "003": "Contact", "00Q": "Lead", "006": "Opportunity", "500": "Case",
                "00T": "Task", "00U": "Event"}

_REFERENCES = ("AccountId", "ContactId", "WhoId", "WhatId", "ConvertedContactId", "ConvertedAccountId")


def _associations(object_type: str, row: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in _REFERENCES:
        value = row.get(name)
        if not value or not isinstance(value, str):
            continue
        target = KEY_PREFIXES.get(value[:3])
        if target is None:
            continue
        out.setdefault(target, [])
        if value not in out[target]:
            out[target].append(value)
    return out


def to_record(source: str, object_type: str, row: dict[str, Any]) -> SourceRecord:
    """Build a source record from one row; the row's fields are kept as Salesforce sent them.

    ``IsDeleted`` rows (only returned by ``queryAll``) become tombstones; a deleted row with
    ``MasterRecordId`` was the loser of a merge and names the surviving record in ``merged_into`` (Object
    Reference, Contact / Lead / Account: "MasterRecordId: If this object was deleted as the result of a
    merge, this field contains the ID of the record that was kept"). A converted Lead links to its contact
    through ``associations['Contact']`` (``ConvertedContactId``).
    """
    row.pop("attributes", None)
    record_id = row.get("Id")
    if not record_id or not isinstance(record_id, str):
        raise RecordError(f"{object_type} row without Id", field="Id")
    try:
        modstamp = parse_datetime(row.get("SystemModstamp"))
    except ValueError:
        # keep the row (the engine maps or quarantines it); it just cannot position a cursor
        log.warning("bad SystemModstamp", extra={"object": object_type, "id": record_id})
        modstamp = None
    derive_fields(object_type, row)
    deleted = bool(row.get("IsDeleted"))
    master = row.get("MasterRecordId")
    return SourceRecord(
        source=source,
        object_type=object_type,
        source_id=record_id,
        modstamp=modstamp,
        fields=row,
        deleted=deleted,
        merged_into=master if deleted and master else None,
        associations=_associations(object_type, row),
    )


def _text(value: str) -> Any:
    return value or None


def _boolean(value: str) -> Any:
    return (value.lower() == "true") if value else None


def _number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(value: str) -> Any:
        if not value:
            return None
        try:
            return kind(value)
        except ValueError:
            return value

    return convert


def _datetime(value: str) -> Any:
    # Bulk CSV: 2024-05-01T10:00:00.000Z; REST JSON: 2024-05-01T10:00:00.000+0000
    if not value:
        return None
    return value[:-1] + "+0000" if value.endswith("Z") else value


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "boolean": _boolean, "int": _number(int), "double": _number(float), "currency": _number(float),
    "percent": _number(float), "datetime": _datetime,
}


def csv_converter(field_type: str | None) -> Callable[[str], Any]:
    """The converter of one CSV column (chosen once per column, not per value)."""
    return _CONVERTERS.get(field_type or "", _text)


def convert_csv_value(value: str, field_type: str | None) -> Any:
    """Bulk CSV values are text; give them the JSON types the REST API uses, so both paths hash alike."""
    return csv_converter(field_type)(value)
