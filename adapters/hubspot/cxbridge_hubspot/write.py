"""Write-back: batch update by id, batch upsert by a unique property, create tasks / notes on contacts.

- ``POST /crm/v3/objects/{type}/batch/update`` -- ``inputs: [{id, properties}]``, at most 100.
- ``POST /crm/v3/objects/{type}/batch/upsert`` -- ``inputs: [{id: <value>, idProperty, properties}]``; the
  ``idProperty`` must be a property with unique values. Source:
  https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/upsert-contacts
- ``POST /crm/v3/objects/{tasks|notes}/batch/create`` with v4 associations (HubSpot-defined type ids: task ->
  contact 204, note -> contact 202). Source: https://developers.hubspot.com/docs/api/crm/associations
- Every input carries ``objectWriteTraceId`` = the op's idempotency key, so results and per-item errors of a
  207 multi-status answer map back to their ops. Source: https://developers.hubspot.com/docs/api-reference/error-handling
- A 400 for a whole batch (one invalid property value fails all) is split into single-op calls so only the bad
  op is dead-lettered; a 409 ``Contact already exists. Existing ID: <id>`` resolves to that id and is applied
  as an update there.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from cxbridge.adapters import WriteOp, WriteResult
from cxbridge.errors import AdapterError, AuthError, QuotaExhausted

from .client import HubSpotClient

__all__ = ["Writer"]

log = logging.getLogger(__name__)
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")
_ASSOC_TYPE = {("tasks", "contacts"): 204, ("notes", "contacts"): 202, ("calls", "contacts"): 194,
               ("emails", "contacts"): 198, ("meetings", "contacts"): 200}
_PRIORITY = {"low": "LOW", "normal": "MEDIUM", "medium": "MEDIUM", "high": "HIGH"}
_PERMANENT = {"OBJECT_NOT_FOUND", "VALIDATION_ERROR", "PROPERTY_DOESNT_EXIST", "INVALID_EMAIL"}


_PLURAL = {"contact": "contacts", "company": "companies", "deal": "deals", "ticket": "tickets", "task": "tasks",
           "note": "notes", "call": "calls", "email": "emails", "meeting": "meetings"}


def _plural(object_type: str) -> str:
    """The generic ``task`` / ``note`` object types of closed-loop actions -> HubSpot's object names."""
    return _PLURAL.get(object_type.lower(), object_type)


def _ms(value: Any) -> str:
    """A datetime or ISO 8601 string -> epoch milliseconds (``hs_timestamp`` takes either; ms is unambiguous)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return str(int(value.timestamp() * 1000))
    return str(value)


def engagement_properties(kind: str, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Canonical action fields (subject, body, due_at, priority) -> task / note properties.

    Any other key is passed through as a raw HubSpot property.
    """
    props = {k: v for k, v in fields.items() if k not in ("subject", "body", "due_at", "priority")}
    subject, body = fields.get("subject") or "", fields.get("body") or ""
    if kind == "tasks":
        props.setdefault("hs_task_subject", subject)
        props.setdefault("hs_task_body", body)
        props.setdefault("hs_task_status", "NOT_STARTED")
        props.setdefault("hs_task_priority", _PRIORITY.get(str(fields.get("priority") or "normal"), "MEDIUM"))
        props.setdefault("hs_timestamp", _ms(fields.get("due_at") or now))  # a task's due date
    else:
        props.setdefault("hs_note_body", f"{subject}\n\n{body}".strip() if subject else body)
        props.setdefault("hs_timestamp", _ms(now))
    return {k: v for k, v in props.items() if v is not None}


class Writer:
    """Applies :class:`WriteOp` batches; one :class:`WriteResult` per op."""

    def __init__(self, client: HubSpotClient, now: Any) -> None:
        self.client, self.now = client, now

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        groups: dict[tuple[str, str, str], list[WriteOp]] = defaultdict(list)
        results: list[WriteResult] = []
        for op in ops:
            if op.action == "update" and not op.source_id:
                results.append(WriteResult(op.key, False, error="update needs source_id"))
            elif op.action == "upsert" and not (op.id_property and op.id_value):
                results.append(WriteResult(op.key, False, error="upsert needs id_property and id_value"))
            else:
                groups[(_plural(op.object_type), op.action, op.id_property or "")].append(op)
        for (object_type, action, _), batch in groups.items():
            for start in range(0, len(batch), 100):
                results.extend(self._batch(object_type, action, batch[start:start + 100]))
        return results

    # ------------------------------------------------------------------------------------------- batches
    def _input(self, object_type: str, op: WriteOp) -> dict[str, Any]:
        item: dict[str, Any] = {"objectWriteTraceId": op.key}
        if op.action == "update":
            item.update(id=op.source_id, properties=dict(op.fields))
        elif op.action == "upsert":
            item.update(id=op.id_value, idProperty=op.id_property, properties=dict(op.fields))
        else:
            props = (engagement_properties(object_type, op.fields, self.now())
                     if object_type in ("tasks", "notes") else dict(op.fields))
            item["properties"] = props
            item["associations"] = [
                {"to": {"id": str(to_id)},
                 "types": [{"associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": _ASSOC_TYPE.get((object_type, to_type), 1)}]}
                for to_type, ids in op.associations.items() for to_id in ids
            ]
        return item

    def _batch(self, object_type: str, action: str, ops: list[WriteOp]) -> list[WriteResult]:
        path = f"/crm/v3/objects/{object_type}/batch/{action}"
        body = {"inputs": [self._input(object_type, op) for op in ops]}
        try:
            resp = self.client.post(path, json=body, idempotent=action != "create")
        except QuotaExhausted as exc:
            return [WriteResult(op.key, False, error=str(exc), retryable=True) for op in ops]
        except AuthError as exc:
            return [WriteResult(op.key, False, error=str(exc), retryable=True) for op in ops]
        except AdapterError as exc:
            return [WriteResult(op.key, False, error=str(exc), retryable=True) for op in ops]
        status = resp.status_code
        if status in (200, 201, 207):
            return self._per_item(ops, resp)
        if status == 409:
            return self._conflict(object_type, action, ops, resp)
        if status == 400 and len(ops) > 1:
            log.info("hubspot batch rejected; retrying item by item",
                     extra={"source": self.client.source, "path": path, "ops": len(ops)})
            return [r for op in ops for r in self._batch(object_type, action, [op])]
        message = _message(resp)
        return [WriteResult(op.key, False, error=f"HTTP {status}: {message}", retryable=status >= 500)
                for op in ops]

    def _per_item(self, ops: list[WriteOp], resp: httpx.Response) -> list[WriteResult]:
        data = resp.json()
        by_key = {op.key: op for op in ops}
        by_id = {str(op.source_id): op for op in ops if op.source_id}
        by_value = {str(op.id_value): op for op in ops if op.id_value}
        out: dict[str, WriteResult] = {}
        for err in data.get("errors") or []:
            ctx = err.get("context") or {}
            keys = list(ctx.get("objectWriteTraceId") or [])
            keys += [by_id[i].key for i in ctx.get("ids") or [] if i in by_id]
            if err.get("objectWriteTraceId"):
                keys.append(err["objectWriteTraceId"])
            retryable = err.get("category") not in _PERMANENT
            for key in keys:
                if key in by_key:
                    out[key] = WriteResult(key, False, error=f"{err.get('category')}: {err.get('message')}",
                                           retryable=retryable)
        leftovers = []
        for res in data.get("results") or []:
            op = by_key.get(res.get("objectWriteTraceId") or "") or by_id.get(str(res.get("id")))
            if op is None:
                props = res.get("properties") or {}
                op = next((by_value[str(v)] for v in props.values() if str(v) in by_value), None)
            if op is None or op.key in out:
                leftovers.append(res)
                continue
            out[op.key] = WriteResult(op.key, True, source_id=str(res.get("id")))
        pending = [op for op in ops if op.key not in out]
        for op, res in zip(pending, leftovers, strict=False):  # e.g. an update of a merged id -> survivor
            out[op.key] = WriteResult(op.key, True, source_id=str(res.get("id")))
        for op in ops:
            out.setdefault(op.key, WriteResult(op.key, False, error="no result for this input", retryable=True))
        return [out[op.key] for op in ops]

    def _conflict(self, object_type: str, action: str, ops: list[WriteOp],
                  resp: httpx.Response) -> list[WriteResult]:
        if len(ops) > 1:
            return [r for op in ops for r in self._batch(object_type, action, [op])]
        op = ops[0]
        match = _EXISTING_ID.search(resp.text)
        if not match:
            return [WriteResult(op.key, False, error=f"409 conflict: {_message(resp)}")]
        existing = match.group(1)
        log.info("hubspot 409 resolved to existing record",
                 extra={"source": self.client.source, "object_type": object_type, "existing_id": existing})
        as_update = WriteOp(key=op.key, object_type=object_type, action="update", fields=op.fields,
                            source_id=existing)
        result = self._batch(object_type, "update", [as_update])[0]
        return [WriteResult(op.key, result.ok, source_id=existing if result.ok else None, error=result.error,
                            retryable=result.retryable)]


def _message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:300]
    parts = [str(data.get("message") or "")]
    parts += [str(e.get("message")) for e in data.get("errors") or [] if isinstance(e, dict)]
    return "; ".join(p for p in parts if p)[:500]
