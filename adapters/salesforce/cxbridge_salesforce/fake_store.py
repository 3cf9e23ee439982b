"""The data side of the fake org: sObjects in memory, with Salesforce's system-field behaviour.

- every create / update / delete / merge / conversion sets ``SystemModstamp`` and ``LastModifiedDate`` to the
  fake clock (seconds precision; :meth:`FakeStore.tick` advances it, many writes may share one stamp);
- deletes are soft (``IsDeleted`` = true, visible to ``queryAll`` only) until :meth:`FakeStore.purge`
  (emptied Recycle Bin), which removes the row but keeps it in the delete log that ``deleted/`` reads;
- merges delete the losers and set their ``MasterRecordId`` to the survivor;
- lead conversion sets ``IsConverted``, ``ConvertedContactId``, ``ConvertedDate`` on the lead.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

from .fake_soql import Query, SoqlError
from .streams import OBJECTS

__all__ = ["FakeStore"]

PREFIX = {"Account": "001", "Contact": "003", "Lead": "00Q", "Opportunity": "006", "Task": "00T",
          "Event": "00U", "Case": "500", "Note": "002"}

_READONLY = {"Id", "IsDeleted", "SystemModstamp", "CreatedDate", "LastModifiedDate", "MasterRecordId", "Name",
             "IsConverted", "ConvertedContactId", "ConvertedAccountId", "ConvertedDate", "IsClosed", "IsWon",
             "CaseNumber"}


def _field_type(name: str) -> str:
    if name == "Id":
        return "id"
    if name in ("SystemModstamp", "CreatedDate", "LastModifiedDate", "StartDateTime", "EndDateTime",
                "ClosedDate"):
        return "datetime"
    if name in ("Birthdate", "CloseDate", "ActivityDate", "ConvertedDate"):
        return "date"
    if name.startswith(("Is", "Has")) or name == "DoNotCall":
        return "boolean"
    if name == "NumberOfEmployees":
        return "int"
    if name in ("AnnualRevenue", "Amount"):
        return "currency"
    if name.endswith("Id"):
        return "reference"
    return "string"


def _describe_field(name: str, kind: str | None = None, *, custom: bool = False, external_id: bool = False,
                    updateable: bool | None = None) -> dict[str, Any]:
    return {"name": name, "label": name, "type": kind or _field_type(name), "custom": custom,
            "updateable": (name not in _READONLY) if updateable is None else updateable,
            "externalId": external_id, "unique": external_id, "nillable": name != "Id"}


def _sort_key(name: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    # nulls first in ascending order, as SOQL does by default
    def key(row: dict[str, Any]) -> tuple[bool, Any]:
        value = row.get(name)
        return (value is not None, value if value is not None else 0)

    return key


class FakeStore:
    """In-memory sObjects with a controllable clock."""

    def __init__(self, *, now: datetime | None = None) -> None:
        self.now = (now or datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)).replace(microsecond=0)
        self.schema: dict[str, dict[str, dict[str, Any]]] = {
            obj: {name: _describe_field(name) for name in spec.fields} for obj, spec in OBJECTS.items()
        }
        self.schema["Note"] = {name: _describe_field(name) for name in (
            "Id", "IsDeleted", "SystemModstamp", "CreatedDate", "LastModifiedDate", "ParentId", "Title", "Body")}
        self.data: dict[str, dict[str, dict[str, Any]]] = {obj: {} for obj in self.schema}
        self.deleted_log: list[tuple[str, str, datetime]] = []
        self.generated: dict[str, tuple[int, Callable[[int], dict[str, Any]]]] = {}
        self.locked: set[str] = set()
        self.validations: list[Callable[[str, dict[str, Any]], tuple[str, str, list[str]] | None]] = []
        self._seq = itertools.count(1)

    # -- clock, schema ---------------------------------------------------------------------------------------

    def tick(self, seconds: float = 1) -> datetime:
        """Advance the clock."""
        from datetime import timedelta

        self.now = self.now + timedelta(seconds=seconds)
        return self.now

    def add_field(self, object_type: str, name: str, kind: str = "string", *, custom: bool | None = None,
                  external_id: bool = False, updateable: bool = True) -> None:
        """Add a field (custom ``__c`` fields are flagged custom, as describe reports them)."""
        self.schema[object_type][name] = _describe_field(
            name, kind, custom=name.endswith("__c") if custom is None else custom, external_id=external_id,
            updateable=updateable)

    def new_id(self, object_type: str) -> str:
        # 18 characters; zero-padded so that string order is creation order (as with real Ids of one org)
        return f"{PREFIX.get(object_type, 'a00')}FAKE{next(self._seq):08d}AAA"

    # -- data changes ----------------------------------------------------------------------------------------

    def _stamp(self, row: dict[str, Any]) -> None:
        row["SystemModstamp"] = self.now
        row["LastModifiedDate"] = self.now

    def insert(self, object_type: str, **fields: Any) -> str:
        """Create a record; returns its Id."""
        unknown = [f for f in fields if f not in self.schema[object_type]]
        if unknown:
            raise KeyError(f"{object_type} has no field {unknown[0]}")
        record_id = self.new_id(object_type)
        row: dict[str, Any] = {name: None for name in self.schema[object_type]}
        row.update(fields)
        row.update(Id=record_id, IsDeleted=False, CreatedDate=self.now)
        if "Name" in row and object_type in ("Contact", "Lead") and not fields.get("Name"):
            row["Name"] = " ".join(str(p) for p in (row.get("FirstName"), row.get("LastName")) if p) or None
        if object_type == "Lead" and row.get("IsConverted") is None:
            row["IsConverted"] = False
        self._stamp(row)
        self.data[object_type][record_id] = row
        return record_id

    def update(self, object_type: str, record_id: str, **fields: Any) -> None:
        """Change fields of a record (as a user or automation would)."""
        row = self.data[object_type][record_id]
        row.update(fields)
        self._stamp(row)

    def touch(self, object_type: str, record_id: str) -> None:
        """A system change: only SystemModstamp moves (roll-up summary, workflow...)."""
        self.data[object_type][record_id]["SystemModstamp"] = self.now

    def delete(self, object_type: str, record_id: str) -> None:
        """Soft delete (Recycle Bin)."""
        row = self.data[object_type][record_id]
        row["IsDeleted"] = True
        self._stamp(row)
        self.deleted_log.append((object_type, record_id, self.now))

    def purge(self, object_type: str, record_id: str) -> None:
        """Empty the record from the Recycle Bin: gone from queryAll, still in the delete log."""
        row = self.data[object_type].pop(record_id)
        if not row.get("IsDeleted"):
            self.deleted_log.append((object_type, record_id, self.now))

    def merge(self, object_type: str, master_id: str, *loser_ids: str) -> None:
        """Merge losers into master: losers deleted with ``MasterRecordId`` = master."""
        for loser in loser_ids:
            row = self.data[object_type][loser]
            row["MasterRecordId"] = master_id
            row["IsDeleted"] = True
            self._stamp(row)
            self.deleted_log.append((object_type, loser, self.now))
        self._stamp(self.data[object_type][master_id])

    def convert_lead(self, lead_id: str, contact_id: str | None = None) -> str:
        """Convert a lead into a (new or given) contact; returns the contact id."""
        lead = self.data["Lead"][lead_id]
        if contact_id is None:
            contact_id = self.insert("Contact", FirstName=lead.get("FirstName"), LastName=lead.get("LastName"),
                                     Email=lead.get("Email"))
        lead.update(IsConverted=True, ConvertedContactId=contact_id, ConvertedDate=self.now.date())
        self._stamp(lead)
        return contact_id

    def add_generated(self, object_type: str, count: int, factory: Callable[[int], dict[str, Any]]) -> None:
        """A large virtual population (rows made on demand by ``factory(i)``), for Bulk benchmarks only."""
        self.generated[object_type] = (count, factory)

    # -- reads -----------------------------------------------------------------------------------------------

    def select(self, query: Query, *, include_deleted: bool) -> list[dict[str, Any]]:
        rows = [r for r in self.data[query.object_type].values()
                if (include_deleted or not r.get("IsDeleted")) and query.where(r)]
        for name, descending in reversed(query.order):
            rows.sort(key=_sort_key(name), reverse=descending)
        return rows[: query.limit] if query.limit is not None else rows

    def bulk_rows(self, query: Query, *, include_deleted: bool) -> tuple[int, Callable[[int, int], Iterator]]:
        """Rows of a completed Bulk job: ``(total, fetch(offset, size))``."""
        if query.object_type in self.generated:
            count, factory = self.generated[query.object_type]

            def fetch_generated(offset: int, size: int) -> Iterator[dict[str, Any]]:
                return (factory(i) for i in range(offset, min(offset + size, count)))

            return count, fetch_generated
        try:
            rows = self.select(query, include_deleted=include_deleted)
        except SoqlError:
            rows = []
        snapshot = [dict(r) for r in rows]
        return len(snapshot), lambda offset, size: iter(snapshot[offset : offset + size])

    @staticmethod
    def rest_datetime(value: datetime) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    def serialize(self, object_type: str, row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": object_type,
                                              "url": f"/services/data/v59.0/sobjects/{object_type}/{row['Id']}"}}
        for name in fields:
            value = row.get(name)
            if isinstance(value, datetime):
                value = self.rest_datetime(value)
            elif isinstance(value, date):
                value = value.isoformat()
            out[name] = value
        return out

    def csv_value(self, object_type: str, name: str, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat()[:19] + ".000Z"
        if isinstance(value, date):
            return value.isoformat()
        return str(value)

    # -- collection operations (one record each; per-record errors like Salesforce) --------------------------

    @staticmethod
    def _fail(code: str, message: str, fields: list[str] | None = None, record_id: str | None = None) -> dict:
        return {"id": record_id, "success": False,
                "errors": [{"statusCode": code, "message": message, "fields": fields or []}]}

    def _apply_fields(self, object_type: str, row: dict[str, Any], fields: dict[str, Any],
                      record_id: str | None) -> dict | None:
        for name in fields:
            if name not in self.schema[object_type]:
                return self._fail("INVALID_FIELD", f"No such column '{name}' on sobject of type {object_type}",
                                  [], record_id)
            if not self.schema[object_type][name].get("updateable"):
                return self._fail("INVALID_FIELD_FOR_INSERT_UPDATE",
                                  f"Unable to create/update fields: {name}.", [name], record_id)
        candidate = {**row, **fields}
        for rule in self.validations:
            problem = rule(object_type, candidate)
            if problem:
                return self._fail(*problem, record_id=record_id)
        return None

    def update_one(self, record: dict[str, Any]) -> dict[str, Any]:
        object_type = (record.get("attributes") or {}).get("type", "")
        record_id = record.get("id") or record.get("Id")
        fields = {k: v for k, v in record.items() if k not in ("attributes", "id", "Id")}
        row = self.data.get(object_type, {}).get(record_id or "")
        if row is None:
            return self._fail("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [], record_id)
        if row.get("IsDeleted"):
            return self._fail("ENTITY_IS_DELETED", "entity is deleted", [], record_id)
        if record_id in self.locked:
            return self._fail("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", [],
                              record_id)
        error = self._apply_fields(object_type, row, fields, record_id)
        if error:
            return error
        self.update(object_type, str(record_id), **fields)
        return {"id": record_id, "success": True, "errors": []}

    def create_one(self, record: dict[str, Any]) -> dict[str, Any]:
        object_type = (record.get("attributes") or {}).get("type", "")
        if object_type not in self.schema:
            return self._fail("INVALID_TYPE", f"sObject type '{object_type}' is not supported")
        fields = {k: v for k, v in record.items() if k != "attributes"}
        error = self._apply_fields(object_type, {}, fields, None)
        if error:
            return error
        return {"id": self.insert(object_type, **fields), "success": True, "errors": []}

    def upsert_one(self, object_type: str, id_field: str, record: dict[str, Any]) -> dict[str, Any]:
        spec = self.schema.get(object_type, {}).get(id_field)
        if not spec or not spec.get("externalId"):
            return self._fail("INVALID_FIELD", f"Field {id_field} is not an external id field", [id_field])
        value = record.get(id_field)
        fields = {k: v for k, v in record.items() if k not in ("attributes", id_field)}
        matches = [r for r in self.data[object_type].values() if r.get(id_field) == value and not r["IsDeleted"]]
        if len(matches) > 1:
            return self._fail("DUPLICATE_EXTERNAL_ID", f"{id_field}: more than one record found", [id_field])
        if matches:
            result = self.update_one({"attributes": {"type": object_type}, "id": matches[0]["Id"], **fields})
            return {**result, "created": False}
        error = self._apply_fields(object_type, {}, fields, None)
        if error:
            return error
        return {"id": self.insert(object_type, **{id_field: value}, **fields), "success": True, "errors": [],
                "created": True}

    def delete_one(self, record_id: str) -> dict[str, Any]:
        for object_type, rows in self.data.items():
            row = rows.get(record_id)
            if row is None:
                continue
            if row.get("IsDeleted"):
                return self._fail("ENTITY_IS_DELETED", "entity is deleted", [], record_id)
            self.delete(object_type, record_id)
            return {"id": record_id, "success": True, "errors": []}
        return self._fail("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [], record_id)
