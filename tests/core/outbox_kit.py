"""Shared helpers for the outbox and erasure tests: a faithful in-memory CRM adapter and store seeding."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cxbridge.adapters import Adapter, Cursor, Page, RecordRef, StreamInfo, WriteOp, WriteResult
from cxbridge.errors import RemoteError
from cxbridge.models import SourceRecord
from cxbridge.store import Store, schema
from cxbridge.store.ops import upsert

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


class Crash(BaseException):
    """Simulates the process dying (not an Exception: nothing may catch it)."""


class FakeCRM(Adapter):
    """An in-memory CRM: records by (object_type, id), every write call and every field write recorded.

    Creates are idempotent by ``op.key`` (like HubSpot's / Salesforce's external-id upserts), updates are
    idempotent by nature; each write bumps the record's modstamp like a real CRM.
    """

    capabilities = frozenset({"write", "erase"})

    def __init__(self, batch_size: int = 100, *, clock: datetime = T0) -> None:
        self.write_batch_size = batch_size
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.modstamps: dict[tuple[str, str], datetime] = {}
        self.calls: list[list[WriteOp]] = []
        self.received: list[tuple[str, str, str, Any]] = []  # (object_type, id, field, value) per update
        self.created: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (new id, fields)
        self.create_calls = 0
        self.fail: dict[str, tuple[str, bool]] = {}  # source_id -> (error, retryable)
        self.raise_on_write: BaseException | None = None
        self.crash_after_write: bool | str = False  # True, or an op action ("create") to crash on
        self.erased: list[RecordRef] = []
        self.clock = clock

    # reading: enough for the tests to re-read what was written
    def streams(self) -> list[StreamInfo]:
        return [StreamInfo(name="contacts", object_type="contacts", entity="customer")]

    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Iterator[Page]:
        records = [self.record(sid) for (ot, sid) in sorted(self.records) if ot == stream]
        yield Page(records=records, cursor=Cursor())

    def record(self, source_id: str, object_type: str = "contacts", source: str = "crm") -> SourceRecord:
        key = (object_type, source_id)
        return SourceRecord(
            source=source,
            object_type=object_type,
            source_id=source_id,
            modstamp=self.modstamps.get(key),
            fields=dict(self.records[key]),
        )

    def human_edit(self, source_id: str, field: str, value: Any, at: datetime) -> None:
        self.records[("contacts", source_id)][field] = value
        self.modstamps[("contacts", source_id)] = at

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        assert len(ops) <= self.write_batch_size, "batch larger than the vendor allows"
        self.calls.append(list(ops))
        if self.raise_on_write is not None:
            raise self.raise_on_write
        results = []
        for op in ops:
            if op.source_id in self.fail:
                error, retryable = self.fail[op.source_id]
                results.append(WriteResult(op.key, ok=False, error=error, retryable=retryable))
                continue
            if op.action == "create":
                self.create_calls += 1
                if op.key not in self.created:
                    self.created[op.key] = (f"T{len(self.created) + 1}", dict(op.fields))
                results.append(WriteResult(op.key, ok=True, source_id=self.created[op.key][0]))
                continue
            key = (op.object_type, op.source_id or "")
            if key not in self.records:
                results.append(WriteResult(op.key, ok=False, error="404 record not found", retryable=False))
                continue
            for name, value in op.fields.items():
                self.records[key][name] = value
                self.received.append((op.object_type, op.source_id or "", name, value))
            self.clock += timedelta(seconds=1)
            self.modstamps[key] = self.clock
            results.append(WriteResult(op.key, ok=True, source_id=op.source_id))
        crash = self.crash_after_write
        if crash is True or (crash and any(op.action == crash for op in ops)):
            raise Crash("killed after the CRM applied the batch")
        return results

    def erase(self, refs: Sequence[RecordRef]) -> list[WriteResult]:
        out = []
        for ref in refs:
            self.erased.append(ref)
            self.records.pop((ref.object_type, ref.source_id), None)
            out.append(WriteResult(f"{ref.object_type}:{ref.source_id}", ok=True))
        return out


def remote_error() -> RemoteError:
    return RemoteError("503 Service Unavailable", source="crm", status=503)


def seed_customer(
    store: Store,
    cid: str,
    sid: str,
    *,
    traits: Mapping[str, Any] | None = None,
    mirror: Mapping[str, Any] | None = None,
    consent: Mapping[str, Any] | None = None,
    erased: bool = False,
    opt_out: bool = False,
    crm: FakeCRM | None = None,
    source: str = "crm",
    emails: Sequence[str] = (),
    phones: Sequence[str] = (),
    modstamp: datetime = T0,
) -> None:
    """A golden customer linked to one ``contacts`` record (mirror and, if given, the fake CRM)."""
    fields = dict(mirror or {})
    with store.begin() as conn:
        conn.execute(
            schema.customers.insert(),
            {
                "id": cid,
                "data": {"consent": dict(consent or {}), "emails": list(emails), "phones": list(phones)},
                "provenance": {},
                "erased": erased,
                "processing_opt_out": opt_out,
                "created_at": T0,
                "updated_at": T0,
                "primary_email": emails[0] if emails else None,
            },
        )
        conn.execute(
            schema.source_links.insert(),
            {
                "source": source,
                "object_type": "contacts",
                "source_id": sid,
                "entity": "customer",
                "customer_id": cid,
                "linked_at": T0,
            },
        )
        conn.execute(
            schema.source_records.insert(),
            {
                "source": source,
                "object_type": "contacts",
                "source_id": sid,
                "modstamp": modstamp,
                "content_hash": "h",
                "fields": fields,
                "mapped": {"emails": list(emails), "phones": list(phones)},
                "first_seen": T0,
                "last_seen": T0,
            },
        )
        for key in [f"email:{e}" for e in emails] + [f"phone:{p}" for p in phones]:
            conn.execute(
                schema.identity_keys.insert(),
                {"key": key, "source": source, "object_type": "contacts", "source_id": sid},
            )
    if traits:
        set_traits(store, cid, traits)
    if crm is not None:
        crm.records[("contacts", sid)] = dict(fields)
        crm.modstamps[("contacts", sid)] = modstamp


def set_traits(store: Store, cid: str, values: Mapping[str, Any], at: datetime = T0) -> None:
    with store.begin() as conn:
        upsert(
            conn,
            schema.traits,
            [
                {
                    "customer_id": cid,
                    "name": k,
                    "value": v,
                    "type": "string",
                    "producer": "test",
                    "computed_at": at,
                }
                for k, v in values.items()
            ],
            key_cols=["customer_id", "name"],
        )


def refresh_mirror(store: Store, crm: FakeCRM, sid: str, at: datetime, source: str = "crm") -> SourceRecord:
    """What the sync engine does with a re-read record: upsert it into the mirror."""
    record = crm.record(sid, source=source)
    with store.begin() as conn:
        upsert(
            conn,
            schema.source_records,
            [
                {
                    "source": source,
                    "object_type": "contacts",
                    "source_id": sid,
                    "modstamp": record.modstamp,
                    "content_hash": record.hash(),
                    "fields": record.fields,
                    "first_seen": T0,
                    "last_seen": at,
                }
            ],
            key_cols=["source", "object_type", "source_id"],
        )
    return record


def outbox_rows(store: Store) -> list[dict[str, Any]]:
    from sqlalchemy import select

    with store.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(schema.outbox).order_by(schema.outbox.c.id))]
