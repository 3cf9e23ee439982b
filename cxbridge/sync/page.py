"""One page of one stream, applied to the store inside the page's transaction.

:class:`PageWriter` does, in order: split off malformed records (``__error__`` fields from file drops) and
records the mapping rejects (both quarantined with the reason); drop records whose content hash equals the
mirror's (unchanged, or re-read through the look-back window / the inclusive cursor boundary) and records of
erased people; upsert the raw mirror; then the entity's work -- identity resolution for customers,
organizations, interactions linked to golden ids -- and tombstones / merges. It returns a
:class:`PageOutcome`; the engine commits it together with the cursor.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, delete, select, update

from ..adapters import StreamInfo
from ..errors import RecordError
from ..golden import IN_CHUNK
from ..identity.resolver import IdentityResolver, LiveItem, identity_lock
from ..models import SourceRecord
from ..store import schema as s
from ..store.jsoncodec import compact_bytes_encoder
from ..store.ops import new_id
from .bulk import RawJSON, bulk_upsert, bulk_upsert_values, compact_encoder, select_in
from .convert import parse_datetime
from .mapping import CompiledMapping, nest_patch

__all__ = ["PageOutcome", "PageWriter", "interaction_id"]

logger = logging.getLogger(__name__)

_MIRROR_UPDATE = ["modstamp", "content_hash", "fields", "associations", "mapped", "deleted", "merged_into",
                  "last_seen", "run_id"]
_MIRROR_COLS = ("source", "object_type", "source_id", "modstamp", "content_hash", "fields", "associations",
                "mapped", "deleted", "merged_into", "first_seen", "last_seen", "run_id")
_TOMBSTONE_UPDATE = ["modstamp", "content_hash", "deleted", "merged_into", "last_seen", "run_id"]


def interaction_id(source: str, object_type: str, source_id: str) -> str:
    """The stable golden id of an interaction (derived from its source key, so re-reads never duplicate)."""
    digest = hashlib.blake2b(f"{source}\x1f{object_type}\x1f{source_id}".encode(), digest_size=12).hexdigest()
    return f"int_{digest}"


@dataclass
class PageOutcome:
    """What a page did (counts for the run, ids for the hooks)."""

    read: int = 0
    changed: int = 0
    quarantined: list[tuple[SourceRecord, str]] = field(default_factory=list)
    customers: set[str] = field(default_factory=set)
    merges: list[tuple[str, list[str]]] = field(default_factory=list)
    interactions: list[dict[str, Any]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # source ids stored in the mirror by this page


_EMPTY = RawJSON("{}")
_ENCODE = compact_encoder(sort_keys=True)
_ENCODE_BYTES = compact_bytes_encoder(sort_keys=True)
_LIVE_TAIL = b"|0||"


def _hash_and_blob(record: SourceRecord) -> tuple[str, RawJSON]:
    """The content hash (fields, flags, associations -- not the modstamp) and the fields' JSON text."""
    raw = _ENCODE_BYTES(record.fields)
    if record.deleted or record.merged_into or record.associations:
        tail = f"|{int(record.deleted)}|{record.merged_into or ''}|"
        if record.associations:
            tail += _ENCODE(record.associations)
        digest = hashlib.blake2b(raw + tail.encode(), digest_size=16).hexdigest()
    else:
        digest = hashlib.blake2b(raw + _LIVE_TAIL, digest_size=16).hexdigest()
    return digest, RawJSON(raw, "utf-8")  # decoded straight into the str subclass (one copy)


def _chunks(items: Sequence[Any]) -> Any:
    for i in range(0, len(items), IN_CHUNK):
        yield items[i : i + IN_CHUNK]


class PageWriter:
    """Applies pages of one (source, stream) to the store.

    :param source: configured source name.
    :param stream: the stream.
    :param mapping: the compiled field map.
    :param resolver: identity resolution (customer streams).
    :param echo_filter: ``(conn, source, records) -> {source_id: fields we wrote}`` (the outbox's
        ``filter_own_writes``), or None.
    :param erased_filter: ``(conn, source, object_type, ids) -> erased ids``, or None.
    :param erased_keys: ``(conn, keys) -> bool``: whether any identity key was erased, or None.
    """

    def __init__(
        self,
        source: str,
        stream: StreamInfo,
        mapping: CompiledMapping,
        resolver: IdentityResolver,
        *,
        echo_filter: Callable[[Connection, str, Sequence[SourceRecord]], dict[str, set[str]]] | None = None,
        erased_filter: Callable[[Connection, str, str, Sequence[str]], set[str]] | None = None,
        erased_keys: Callable[[Connection, Sequence[str]], bool] | None = None,
    ) -> None:
        self.source = source
        self.stream = stream
        self.mapping = mapping
        self.resolver = resolver
        self.echo_filter = echo_filter
        self.erased_filter = erased_filter
        self.erased_keys = erased_keys
        self._org_refs = "organization_ref" in mapping.spec

    # ---------------------------------------------------------------------------------------------- entry

    def write(self, conn: Connection, records: Sequence[SourceRecord], run_id: str, now: datetime) -> PageOutcome:
        """Apply ``records`` (one page) in ``conn``'s transaction."""
        out = PageOutcome(read=len(records))
        entity = self.stream.entity
        if entity == "customer" and records:
            # taken before any row lock of this page, so concurrent pages always lock in the same order
            identity_lock(conn)
        mapped: list[tuple[SourceRecord, dict[str, Any] | None, str, RawJSON]] = []
        mapping, maps, interaction = self.mapping, entity != "other", entity == "interaction"
        for record in records:
            fields = record.fields
            error = fields.get("__error__") if fields else None
            if error is not None:
                out.quarantined.append((record, str(error)))
                continue
            patch: dict[str, Any] | None = None
            if maps and not record.deleted and not record.merged_into:
                try:
                    patch = mapping(fields)
                    if interaction and "occurred_at" not in patch:
                        if record.modstamp is None:
                            raise RecordError("no occurred_at (and no modstamp to default to)",
                                              field="occurred_at")
                        patch["occurred_at"] = record.modstamp.isoformat()
                except RecordError as exc:
                    out.quarantined.append((record, f"{exc} (record {record.source_id})"))
                    continue
            digest, blob = _hash_and_blob(record)
            mapped.append((record, patch, digest, blob))
        if not mapped:
            return out
        # Records of one stream share an object type; group defensively all the same.
        first_type = mapped[0][0].object_type
        if all(item[0].object_type == first_type for item in mapped):
            self._write_type(conn, first_type, mapped, run_id, now, out)
            return out
        by_type: dict[str, list[tuple[SourceRecord, dict[str, Any] | None, str, RawJSON]]] = {}
        for item in mapped:
            by_type.setdefault(item[0].object_type, []).append(item)
        for object_type, items in by_type.items():
            self._write_type(conn, object_type, items, run_id, now, out)
        return out

    # ------------------------------------------------------------------------------------------ per type

    def _write_type(self, conn: Connection, object_type: str, items: list[Any], run_id: str, now: datetime,
                    out: PageOutcome) -> None:
        source = self.source
        sr = s.source_records
        # Later duplicates of one id in a page win (the adapter's order is the change order).
        latest = {item[0].source_id: item for item in items}
        if len(latest) != len(items):
            items = list(latest.values())
        hashes: dict[str, str] = dict(select_in(  # type: ignore[arg-type]
            conn, sr, ("source_id", "content_hash"), {"source": source, "object_type": object_type},
            "source_id", list(latest)))
        changed = [it for it in items if hashes.get(it[0].source_id) != it[2]] if hashes else items
        if not changed:
            return
        # The erasure ledger is usually empty: one cheap query saves hashing every key of the page.
        ledger = conn.execute(select(s.erasure_ledger.c.hash).limit(1)).first() is not None
        if ledger and self.erased_filter is not None:
            erased = self.erased_filter(conn, source, object_type, [it[0].source_id for it in changed])
            if erased:
                changed = [it for it in changed if it[0].source_id not in erased]
        old_patches: dict[str, Any] = {}
        existing = [it[0].source_id for it in changed if it[0].source_id in hashes] if hashes else []
        for part in _chunks(existing):
            rows = conn.execute(select(sr.c.source_id, sr.c.mapped).where(
                sr.c.source == source, sr.c.object_type == object_type, sr.c.source_id.in_(part)))
            old_patches.update(dict(rows.all()))
        entity = self.stream.entity
        if entity == "customer":
            if ledger:
                changed = self._drop_erased_people(conn, changed)
            if self._org_refs:
                self._resolve_org_refs(conn, changed)
        echo: dict[str, set[str]] = {}
        if self.echo_filter is not None and existing:
            echo = self.echo_filter(conn, source, [it[0] for it in changed if it[0].source_id in hashes]) or {}
        live_rows: list[list[Any]] = []
        dead_rows: list[list[Any]] = []
        live: list[tuple[SourceRecord, dict[str, Any]]] = []
        dead: list[SourceRecord] = []
        written = out.written
        for rec, patch, digest, blob in changed:
            written.append(rec.source_id)
            if rec.deleted or rec.merged_into:
                dead_rows.append([source, object_type, rec.source_id, rec.modstamp, digest, blob,
                                  rec.associations or _EMPTY, patch, True, rec.merged_into, now, now, run_id])
            else:
                live_rows.append([source, object_type, rec.source_id, rec.modstamp, digest, blob,
                                  rec.associations or _EMPTY, patch, False, None, now, now, run_id])
            if patch is not None:
                live.append((rec, patch))
            else:
                dead.append(rec)
        keys = ["source", "object_type", "source_id"]
        bulk_upsert_values(conn, sr, _MIRROR_COLS, live_rows, keys, _MIRROR_UPDATE)
        # A tombstone keeps the last known fields and patch (adapters send deletions without fields).
        bulk_upsert_values(conn, sr, _MIRROR_COLS, dead_rows, keys, _TOMBSTONE_UPDATE)
        quiet = self._echo_only(live, old_patches, echo)
        # our own write-backs coming back are stored (so the hash matches next time) but are not changes
        out.changed += len(changed) - len(quiet)
        if entity == "customer":
            self._customers(conn, object_type, live, dead, old_patches, quiet, now, out)
        elif entity == "organization":
            self._organizations(conn, object_type, live, dead, now)
        elif entity == "interaction":
            self._interactions(conn, object_type, live, dead, now, out)

    def _echo_only(self, live: list[tuple[SourceRecord, dict[str, Any]]], old: dict[str, Any],
                   echo: dict[str, set[str]]) -> set[str]:
        """Source ids whose only mapped differences come from fields we wrote ourselves (no ping-pong)."""
        quiet: set[str] = set()
        if not echo:
            return quiet
        for rec, patch in live:
            fields = echo.get(rec.source_id)
            before = old.get(rec.source_id)
            if not fields or before is None:
                continue
            targets = self.mapping.targets_of(fields)
            keys = (set(patch) | set(before)) - targets
            if all(patch.get(k) == before.get(k) for k in keys):
                quiet.add(rec.source_id)
        return quiet

    def _drop_erased_people(self, conn: Connection, changed: list[Any]) -> list[Any]:
        if self.erased_keys is None:
            return changed
        keys_of = [(it, self.resolver.keys(it[1])) if it[1] is not None else (it, ()) for it in changed]
        every = [k for _it, ks in keys_of for k in ks]
        if not every or not self.erased_keys(conn, every):
            return changed
        return [it for it, ks in keys_of if not ks or not self.erased_keys(conn, list(ks))]

    def _resolve_org_refs(self, conn: Connection, changed: list[Any]) -> None:
        refs = {p["organization_ref"] for _r, p, *_ in changed if p and p.get("organization_ref")}
        if not refs:
            return
        sl = s.source_links
        found: dict[str, str] = {}
        for part in _chunks(sorted(refs)):
            rows = conn.execute(select(sl.c.source_id, sl.c.organization_id).where(
                sl.c.source == self.source, sl.c.entity == "organization", sl.c.source_id.in_(part)))
            found.update({a: b for a, b in rows if b})
        for _r, patch, *_ in changed:
            if patch and patch.get("organization_ref") in found:
                patch["organization_id"] = found[patch["organization_ref"]]

    # ---------------------------------------------------------------------------------------- customers

    def _customers(self, conn: Connection, object_type: str, live: list[Any], dead: list[SourceRecord],
                   old: dict[str, Any], quiet: set[str], now: datetime, out: PageOutcome) -> None:
        items = [LiveItem(rec, patch, old.get(rec.source_id)) for rec, patch in live]
        result = self.resolver.link(conn, self.source, object_type, items, now)
        if quiet:
            loud = {cid for sid, cid in result.links.items() if sid not in quiet}
            out.customers |= result.changed & (loud | (result.changed - set(result.links.values())))
        else:
            out.customers |= result.changed
        out.customers |= {m[0] for m in result.merges}
        out.merges.extend(result.merges)
        if dead:
            tombs = [(r.source_id, r.merged_into, old.get(r.source_id)) for r in dead]
            removed = self.resolver.remove(conn, self.source, object_type, tombs, now)
            out.customers |= removed.changed
            out.customers -= removed.removed
            out.merges.extend(removed.merges)

    # ------------------------------------------------------------------------------------ organizations

    def _organizations(self, conn: Connection, object_type: str, live: list[Any], dead: list[SourceRecord],
                       now: datetime) -> None:
        sl, org = s.source_links, s.organizations
        ids = [r.source_id for r, _p in live] + [r.source_id for r in dead]
        current: dict[str, str] = {}
        for part in _chunks(ids):
            rows = conn.execute(select(sl.c.source_id, sl.c.organization_id).where(
                sl.c.source == self.source, sl.c.object_type == object_type, sl.c.source_id.in_(part)))
            current.update({a: b for a, b in rows if b})
        links, orgs = [], []
        for rec, patch in live:
            oid = current.get(rec.source_id)
            if oid is None:
                oid = new_id("org")
                links.append({"source": self.source, "object_type": object_type, "source_id": rec.source_id,
                              "entity": "organization", "customer_id": None, "organization_id": oid,
                              "rule": "new", "linked_at": now})
            data = nest_patch(patch)
            orgs.append({"id": oid, "data": data, "name": data.get("name"), "domain": data.get("domain"),
                         "created_at": now, "updated_at": now})
        bulk_upsert(conn, sl, links, ["source", "object_type", "source_id"])
        bulk_upsert(conn, org, orgs, ["id"], ["data", "name", "domain", "updated_at"])
        gone = [current[r.source_id] for r in dead if r.source_id in current]
        if gone:
            conn.execute(delete(sl).where(sl.c.source == self.source, sl.c.object_type == object_type,
                                          sl.c.source_id.in_([r.source_id for r in dead])))
            conn.execute(delete(org).where(org.c.id.in_(gone)))

    # ------------------------------------------------------------------------------------- interactions

    def _interactions(self, conn: Connection, object_type: str, live: list[Any], dead: list[SourceRecord],
                      now: datetime, out: PageOutcome) -> None:
        it = s.interactions
        refs: dict[str, str] = {}
        for rec, patch in live:
            ref = patch.get("customer_ref")
            if ref is None and rec.associations:
                assoc: list[str] = rec.associations.get(self.stream.customer_object or "") or next(
                    iter(rec.associations.values()), [])
                ref = assoc[0] if assoc else None
            if ref is not None:
                refs[rec.source_id] = str(ref)
        owners = self.customer_ids_for(conn, set(refs.values()))
        rows = []
        for rec, patch in live:
            ref = refs.get(rec.source_id)
            cid = owners.get(ref) if ref else None
            amount = patch.get("amount")
            row = {
                "id": interaction_id(self.source, object_type, rec.source_id),
                "customer_id": cid,
                "source": self.source,
                "object_type": object_type,
                "source_id": rec.source_id,
                "channel": patch.get("channel", "other"),
                "type": patch.get("type", "other"),
                "occurred_at": parse_datetime(patch["occurred_at"]),
                "direction": patch.get("direction", "none"),
                "amount": Decimal(amount) if amount is not None else None,
                "currency": patch.get("currency"),
                "subject": patch.get("subject"),
                "content": patch.get("content"),
                "sentiment": patch.get("sentiment"),
                "data": {"context": nest_patch({k: v for k, v in patch.items() if k.startswith("context.")}
                                              ).get("context", {}),
                         "custom": nest_patch({k: v for k, v in patch.items() if k.startswith("custom.")}
                                             ).get("custom", {}),
                         "customer_ref": ref},
                "deleted": False,
                "updated_at": now,
            }
            rows.append(row)
            if cid:
                out.customers.add(cid)
        keep = ("id", "source", "object_type", "source_id")
        bulk_upsert(conn, it, rows, ["source", "object_type", "source_id"],
                    [c for c in rows[0] if c not in keep] if rows else None)
        out.interactions.extend(rows)
        if dead:
            dead_ids = [r.source_id for r in dead]
            for part in _chunks(dead_ids):
                cond = and_(it.c.source == self.source, it.c.object_type == object_type, it.c.source_id.in_(part))
                out.customers |= {c for (c,) in conn.execute(select(it.c.customer_id).where(cond)) if c}
                conn.execute(update(it).where(cond).values(deleted=True, updated_at=now))

    def customer_ids_for(self, conn: Connection, refs: set[str]) -> dict[str, str]:
        """Golden ids of customer records of this source, by source id."""
        if not refs:
            return {}
        sl = s.source_links
        found: dict[str, str] = {}
        for part in _chunks(sorted(refs)):
            query = select(sl.c.source_id, sl.c.customer_id).where(
                sl.c.source == self.source, sl.c.entity == "customer", sl.c.source_id.in_(part))
            if self.stream.customer_object:
                query = query.where(sl.c.object_type == self.stream.customer_object)
            found.update({a: b for a, b in conn.execute(query) if b})
        return found

    def adopt_orphans(self, conn: Connection, now: datetime) -> set[str]:
        """Link this source's interactions whose customer record arrived after them; returns customer ids."""
        it = s.interactions
        orphans = conn.execute(select(it.c.id, it.c.data).where(
            it.c.source == self.source, it.c.customer_id.is_(None), it.c.deleted.is_(False))).all()
        refs = {row.id: (row.data or {}).get("customer_ref") for row in orphans}
        owners = self.customer_ids_for(conn, {r for r in refs.values() if r})
        adopted: set[str] = set()
        for iid, ref in refs.items():
            cid = owners.get(ref) if ref else None
            if cid:
                conn.execute(update(it).where(it.c.id == iid).values(customer_id=cid, updated_at=now))
                adopted.add(cid)
        return adopted
