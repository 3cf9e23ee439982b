"""Write-back through sObject Collections, and erasure.

REST API Developer Guide, "sObject Collections"
(https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html):

- update: ``PATCH /composite/sobjects``
  ``{"allOrNone": false, "records": [{"attributes": {"type": T}, "id": ...}]}``;
- upsert by external id: ``PATCH /composite/sobjects/{T}/{ExternalIdField}`` (one object type per call; "Only
  external ids are supported. Don't use record ids.");
- create: ``POST /composite/sobjects``;
- delete: ``DELETE /composite/sobjects?ids=...&allOrNone=false``.

Each call takes at most 200 records and answers 200 with one result per record, in request order:
``{"id", "success", "errors": [{"statusCode", "message", "fields"}]}``. With ``allOrNone=false`` a failing record
fails alone; we turn its errors into ``WriteResult(ok=False, error="STATUS: message (fields)")`` and mark it
retryable only for lock / limit / transient status codes, so validation errors are dead-lettered at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from cxbridge.adapters import RecordRef, WriteOp, WriteResult
from cxbridge.errors import AdapterError, QuotaExhausted

from .client import SalesforceClient
from .records import KEY_PREFIXES

__all__ = ["BATCH", "RETRYABLE_CODES", "SalesforceWriter"]

BATCH = 200

#: statusCodes worth retrying later (record locks, limits, transient platform errors).
RETRYABLE_CODES = frozenset({
    "UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION",
    "REQUEST_RUNNING_TOO_LONG", "TXN_SECURITY_METERING_ERROR", "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "CONCURRENT_REQUESTS_LIMIT_EXCEEDED",
})

_PRIORITY = {"low": "Low", "normal": "Normal", "high": "High"}
_WHO = {"Contact", "Lead"}


def _error_text(errors: Sequence[Mapping[str, Any]]) -> tuple[str, bool]:
    parts, retryable = [], bool(errors)
    for err in errors or [{"statusCode": "UNKNOWN", "message": "no error details"}]:
        code = str(err.get("statusCode") or "UNKNOWN")
        fields = err.get("fields") or []
        text = f"{code}: {err.get('message', '')}"
        if fields:
            text += f" ({', '.join(fields)})"
        parts.append(text)
        retryable = retryable and code in RETRYABLE_CODES
    return "; ".join(parts), retryable


def _targets(op: WriteOp) -> tuple[str | None, str | None]:
    """``(WhoId, WhatId)`` for an action: a Contact is preferred over a Lead; accounts, deals, cases are 'what'."""
    who: dict[str, str] = {}
    what: str | None = None
    for object_type, ids in op.associations.items():
        if not ids:
            continue
        name = object_type if object_type in KEY_PREFIXES.values() else KEY_PREFIXES.get(ids[0][:3], object_type)
        if name in _WHO:
            who.setdefault(name, ids[0])
        elif what is None:
            what = ids[0]
    return who.get("Contact") or who.get("Lead"), what


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


class SalesforceWriter:
    """Applies :class:`WriteOp` batches; one result per op."""

    def __init__(self, client: SalesforceClient, *, task_key_field: str | None = None) -> None:
        self.client = client
        self.task_key_field = task_key_field

    # -- building records ------------------------------------------------------------------------------------

    def _task_record(self, op: WriteOp) -> dict[str, Any]:
        record: dict[str, Any] = {"attributes": {"type": "Task"}}
        for key, value in op.fields.items():
            if key == "subject":
                record["Subject"] = value
            elif key == "body":
                record["Description"] = value
            elif key == "due_at":
                if isinstance(value, str):
                    value = datetime.fromisoformat(value)
                record["ActivityDate"] = value.date().isoformat() if isinstance(value, datetime) else value
            elif key == "priority":
                record["Priority"] = _PRIORITY.get(str(value), str(value))
            else:
                record[key] = _json_value(value)
        record.setdefault("Status", "Not Started")
        who, what = _targets(op)
        if who:
            record.setdefault("WhoId", who)
        if what:
            record.setdefault("WhatId", what)
        if self.task_key_field:
            record[self.task_key_field] = op.key
        return record

    @staticmethod
    def _note_record(op: WriteOp) -> dict[str, Any]:
        """A classic Note (Title, Body, ParentId) on the contact / lead / account the action is about."""
        who, what = _targets(op)
        record: dict[str, Any] = {
            "attributes": {"type": "Note"},
            "Title": str(op.fields.get("subject") or "")[:80],  # Note.Title is 80 characters at most
            "Body": op.fields.get("body") or "",
        }
        parent = who or what
        if parent:
            record["ParentId"] = parent
        return record

    # -- calls -----------------------------------------------------------------------------------------------

    def _collection(self, method: str, path: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = json.dumps({"allOrNone": False, "records": records}, default=str)
        result = self.client.call(
            lambda sf: sf.restful(path, method=method, data=body), what=f"{method} {path}"
        )
        return list(result or [])

    def _apply(
        self, ops: list[WriteOp], method: str, path: str, records: list[dict[str, Any]]
    ) -> list[WriteResult]:
        try:
            answers = self._collection(method, path, records)
        except QuotaExhausted:
            raise
        except AdapterError as exc:
            retryable = exc.kind == "transient"
            return [WriteResult(op.key, False, op.source_id, str(exc), retryable) for op in ops]
        results = []
        for i, op in enumerate(ops):
            answer: dict[str, Any] = answers[i] if i < len(answers) else {"success": False, "errors": [
                {"statusCode": "UNKNOWN", "message": "no result returned for this record"}]}
            if answer.get("success"):
                results.append(WriteResult(op.key, True, answer.get("id") or op.source_id))
            else:
                text, retryable = _error_text(answer.get("errors") or [])
                results.append(WriteResult(op.key, False, op.source_id, text, retryable))
        return results

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Group ``ops`` by kind (and object / external-id field for upserts) and send <=200 per call."""
        results: list[WriteResult] = []
        groups: dict[tuple[str, str, str], list[WriteOp]] = {}
        for op in ops:
            if op.action == "update":
                if not op.source_id:
                    results.append(WriteResult(op.key, False, None, "update needs source_id"))
                    continue
                groups.setdefault(("update", "", ""), []).append(op)
            elif op.action == "upsert":
                if not op.id_property or op.id_value is None:
                    results.append(WriteResult(op.key, False, None, "upsert needs id_property and id_value"))
                    continue
                groups.setdefault(("upsert", op.object_type, op.id_property), []).append(op)
            elif op.object_type.lower() in ("task", "tasks") and self.task_key_field:
                groups.setdefault(("upsert", "Task", self.task_key_field), []).append(op)
            else:
                groups.setdefault(("create", "", ""), []).append(op)
        for (kind, object_type, id_field), group in groups.items():
            for start in range(0, len(group), BATCH):
                batch = group[start : start + BATCH]
                records = [self._record(kind, op, object_type, id_field) for op in batch]
                if kind == "update":
                    results += self._apply(batch, "PATCH", "composite/sobjects", records)
                elif kind == "upsert":
                    results += self._apply(batch, "PATCH", f"composite/sobjects/{object_type}/{id_field}", records)
                else:
                    results += self._apply(batch, "POST", "composite/sobjects", records)
        return results

    def _record(self, kind: str, op: WriteOp, object_type: str, id_field: str) -> dict[str, Any]:
        if op.object_type.lower() in ("task", "tasks") and kind != "update":
            return self._task_record(op)
        if op.object_type.lower() in ("note", "notes") and kind == "create":
            return self._note_record(op)
        record: dict[str, Any] = {"attributes": {"type": op.object_type}}
        record.update({k: _json_value(v) for k, v in op.fields.items()})
        if kind == "update":
            record["id"] = op.source_id
        elif kind == "upsert":
            record[id_field] = op.id_value
        return record

    def _delete(self, ids: str) -> list[dict[str, Any]]:
        answers = self.client.call(
            lambda sf: sf.restful(
                "composite/sobjects", method="DELETE", params={"ids": ids, "allOrNone": "false"}
            ),
            what="delete composite/sobjects",
        )
        return list(answers or [])

    def erase(self, refs: Sequence[RecordRef]) -> list[WriteResult]:
        """Delete records (<=200 ids per call). Already-deleted records count as erased."""
        results: list[WriteResult] = []
        for start in range(0, len(refs), BATCH):
            batch = list(refs[start : start + BATCH])
            ids = ",".join(ref.source_id for ref in batch)
            keys = [f"{ref.object_type}:{ref.source_id}" for ref in batch]
            try:
                answers = self._delete(ids)
            except QuotaExhausted:
                raise
            except AdapterError as exc:
                results += [WriteResult(k, False, r.source_id, str(exc), exc.kind == "transient")
                            for k, r in zip(keys, batch, strict=True)]
                continue
            for i, (key, ref) in enumerate(zip(keys, batch, strict=True)):
                answer = answers[i] if i < len(answers) else {}
                errors = answer.get("errors") or []
                gone = any(e.get("statusCode") in ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY")
                           for e in errors)
                if answer.get("success") or gone:
                    results.append(WriteResult(key, True, ref.source_id))
                else:
                    text, retryable = _error_text(errors)
                    results.append(WriteResult(key, False, ref.source_id, text, retryable))
        return results
