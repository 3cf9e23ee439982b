"""Erasure (GDPR art. 17): ``cxbridge forget <email|phone|id>``. ARCHITECTURE §6.8.

:func:`forget` resolves the person (an email, a phone number, a golden id or an alias of a merged one),
asks every linked source whose adapter can ``erase`` to erase its records, then -- in one store transaction
-- deletes everything cxbridge keeps about the person (golden record, aliases, links, identity keys, traits
and their history, events, interactions, the mirrored source records, write-back state, pending writes and
quarantined rows), redacts the stored webhook events that mention them (:func:`_mentions`) and writes
**hashed** ledger entries. The ledger keeps no readable identifier: each
entry is ``sha256(workspace salt, key)`` of the person's identity keys (``email:<normalized>``,
``phone:<E.164>``, ``xid:<name>:<value>``) and source record keys (``src:<source>:<object>:<id>``). The salt
is random per workspace (stored in ``source_state``), so hashes cannot be matched across installations.

The sync engine consults the ledger so the person is not imported again: :func:`erased_source_keys` for
records by id and :func:`is_erased` for records by their identity keys.

A CRM that cannot erase right away (an outage, a rate limit, a record it refuses, an adapter that cannot be
built) must not be forgotten with the person: the records it still holds are kept in ``erasure_pending`` --
their CRM ids only -- and :func:`retry_erasures` (``cxbridge erasures retry``) asks again until the CRM confirms;
the ledger's per-source status follows.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pluggy
from sqlalchemy import Connection, delete, or_, select, tuple_, update

from .adapters import Adapter, RecordRef
from .errors import NotFound
from .identity.keys import KeyBuilder
from .identity.resolver import key_owners
from .models import normalize_email, normalize_phone
from .store import Store, schema
from .store.ops import chunked, upsert, utcnow

__all__ = [
    "ErasureReport",
    "ErasureRetryReport",
    "erased_source_keys",
    "forget",
    "is_erased",
    "ledger_hashes",
    "pending_erasures",
    "resolve_customer",
    "retry_erasures",
    "source_key",
    "workspace_salt",
]

logger = logging.getLogger(__name__)

SALT_SOURCE = "_cxbridge"
SALT_KEY = "erasure_salt"


@dataclass
class ErasureReport:
    """The outcome of :func:`forget`.

    :param sources: source -> ``erased`` | ``failed: <reason>`` | ``not supported by the adapter`` |
        ``source not configured`` (local data is removed in every case).
    :param deleted: table -> rows deleted from the store.
    :param ledger_entries: hashed identifiers recorded so the person is not re-imported.
    """

    customer_id: str
    sources: dict[str, str] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    ledger_entries: int = 0
    merged_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every source that supports erasure confirmed it."""
        return not any(status.startswith("failed") for status in self.sources.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "merged_ids": self.merged_ids,
            "sources": dict(self.sources),
            "deleted": dict(self.deleted),
            "ledger_entries": self.ledger_entries,
            "ok": self.ok,
        }


# ------------------------------------------------------------------------------------------------- the ledger


def workspace_salt(conn: Connection) -> str:
    """The workspace's ledger salt, created on first use (concurrent first uses agree on one)."""
    st = schema.source_state
    query = select(st.c.value).where(st.c.source == SALT_SOURCE, st.c.key == SALT_KEY)
    salt = conn.execute(query).scalar_one_or_none()
    if salt:
        return str(salt)
    row = {"source": SALT_SOURCE, "key": SALT_KEY, "value": secrets.token_hex(32), "updated_at": utcnow()}
    upsert(conn, st, [row], key_cols=["source", "key"], update_cols=[])
    return str(conn.execute(query).scalar_one())


def source_key(source: str, object_type: str, source_id: str) -> str:
    """The ledger key of a source record."""
    return f"src:{source}:{object_type}:{source_id}"


def _hash(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}\x00{key}".encode()).hexdigest()


def ledger_hashes(conn: Connection, keys: Iterable[str]) -> dict[str, str]:
    """key -> ledger hash (salted sha256) for each key."""
    salt = workspace_salt(conn)
    return {key: _hash(salt, key) for key in keys}


def _known(conn: Connection, hashes: Iterable[str]) -> set[str]:
    led = schema.erasure_ledger
    found: set[str] = set()
    for part in chunked(sorted(set(hashes)), 500):
        found.update(conn.execute(select(led.c.hash).where(led.c.hash.in_(part))).scalars())
    return found


def _ledger_empty(conn: Connection) -> bool:
    led = schema.erasure_ledger
    return conn.execute(select(led.c.hash).limit(1)).first() is None


def is_erased(conn: Connection, keys: Sequence[str]) -> bool:
    """Whether any of the identity keys (``email:…``, ``phone:…``, ``xid:…:…``) belongs to an erased person."""
    if not keys or _ledger_empty(conn):
        return False
    return bool(_known(conn, ledger_hashes(conn, keys).values()))


def erased_source_keys(conn: Connection, source: str, object_type: str, ids: Sequence[str]) -> set[str]:
    """The ``ids`` (records of ``source``/``object_type``) that belong to erased people: skip them on import."""
    if not ids or _ledger_empty(conn):
        return set()
    hashes = ledger_hashes(conn, (source_key(source, object_type, i) for i in ids))
    known = _known(conn, hashes.values())
    return {i for i in ids if hashes[source_key(source, object_type, i)] in known}


# ------------------------------------------------------------------------------------------------- resolving


def resolve_customer(conn: Connection, identifier: str, *, default_region: str | None = None) -> str | None:
    """The golden id for an email, phone number, golden id or alias (merged id) -- or None."""
    c, al = schema.customers, schema.customer_aliases
    ident = identifier.strip()
    if conn.execute(select(c.c.id).where(c.c.id == ident)).first():
        return ident
    survivor = conn.execute(select(al.c.customer_id).where(al.c.alias_id == ident)).scalar_one_or_none()
    if survivor:
        return str(survivor)
    try:
        if "@" in ident:
            key = "email:" + normalize_email(ident)
        else:
            key = "phone:" + normalize_phone(ident, default_region)
    except ValueError:
        return None
    owners = sorted(cid for _key, cid in key_owners(conn, [key]))
    if owners:
        return owners[0]
    if key.startswith("email:"):
        # emails are keys only where identity.match_on has "email"; the primary email column has no index,
        # but forgetting is rare and this is its last resort
        found = conn.execute(select(c.c.id).where(c.c.primary_email == key[6:]).limit(1)).scalar()
        if found:
            return str(found)
    return None


# ------------------------------------------------------------------------------------------------- forgetting


def forget(
    store: Store,
    adapters: Mapping[str, Adapter],
    identifier: str,
    *,
    pm: pluggy.PluginManager | None = None,
    now: datetime | None = None,
    default_region: str | None = None,
    on_plugin_failure: Callable[[Any], None] | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> ErasureReport:
    """Erase a person everywhere: linked CRMs that support it, the store, and record the hashed ledger.

    :param store: the store.
    :param adapters: configured source name -> adapter; sources without one are reported ``source not
        configured``.
    :param identifier: email, phone number, golden id or a merged (alias) id.
    :param pm: plugin manager; ``customer_erased`` is called after the store removed the person.
    :param default_region: region for phone numbers without a country code (``identity.default_region``).
    :param unavailable: configured sources whose adapter could not be built -> why; their records are kept
        for :func:`retry_erasures` like any failed erasure.
    :raises NotFound: nobody matches ``identifier``.
    """
    now = now or utcnow()
    with store.connect() as conn:
        cid = resolve_customer(conn, identifier, default_region=default_region)
        if cid is None:
            raise NotFound(f"no customer matches {identifier!r}")
        people = _collect(conn, cid)
    report = ErasureReport(customer_id=cid, merged_ids=sorted(people.ids - {cid}))
    report.sources, failures = _erase_in_sources(adapters, people.links, unavailable or {})
    with store.begin() as conn:
        hashes = ledger_hashes(conn, sorted(people.ledger_keys))
        report.deleted = _delete(conn, people, now)
        upsert(conn, schema.erasure_pending, [
            {"source": source, "object_type": ref.object_type, "source_id": ref.source_id, "customer_id": cid,
             "requested_at": now, "attempts": 1, "last_attempt_at": now, "last_error": error[:2000]}
            for source, failed in failures.items() for ref, error in failed.items()
        ], key_cols=["source", "object_type", "source_id"])
        upsert(
            conn,
            schema.erasure_ledger,
            [
                {
                    "hash": h,
                    "kind": _kind(key),
                    "customer_id": cid,
                    "requested_at": now,
                    "sources_status": report.sources,
                }
                for key, h in hashes.items()
            ],
            key_cols=["hash"],
        )
        report.ledger_entries = len(hashes)
    email_hashes = [h for key, h in hashes.items() if key.startswith("email:")]
    logger.info("customer %s erased: sources %s, %d ledger entries", cid, report.sources, report.ledger_entries)
    if pm is not None:
        from .plugins import call_isolated

        call_isolated(
            pm, "customer_erased", customer_id=cid, email_hashes=email_hashes, on_failure=on_plugin_failure
        )
    return report


def _kind(key: str) -> str:
    head = key.split(":", 1)[0]
    return {"email": "email", "phone": "phone", "xid": "xid", "src": "source_id"}.get(head, "other")


@dataclass
class _Person:
    ids: set[str]
    links: list[tuple[str, str, str]]
    refs: set[tuple[str, str, str]]
    ledger_keys: set[str]
    stored_keys: set[str]  # match keys the person's records may have in identity_keys


def _collect(conn: Connection, cid: str) -> _Person:
    c, al, sl, sr, it = (
        schema.customers,
        schema.customer_aliases,
        schema.source_links,
        schema.source_records,
        schema.interactions,
    )
    ids = {cid} | set(conn.execute(select(al.c.alias_id).where(al.c.customer_id == cid)).scalars())
    id_list = sorted(ids)
    links = [
        (r.source, r.object_type, r.source_id)
        for r in conn.execute(
            select(sl.c.source, sl.c.object_type, sl.c.source_id)
            .where(sl.c.customer_id.in_(id_list))
            .order_by(sl.c.source, sl.c.object_type, sl.c.source_id)
        )
    ]
    # the keys of each linked record come from its mapped patch (every key it can have stored)
    stored: set[str] = set()
    for part in chunked(links, 300):
        cols = tuple_(sr.c.source, sr.c.object_type, sr.c.source_id)
        for (patch,) in conn.execute(select(sr.c.mapped).where(cols.in_(list(part)))):
            stored |= KeyBuilder.possible(patch or {})
    keys = set(stored)
    data = conn.execute(select(c.c.data).where(c.c.id == cid)).scalar_one_or_none() or {}
    for email in data.get("emails") or ():
        keys.add(f"email:{email}")
    for phone in data.get("phones") or ():
        keys.add(f"phone:{phone}")
    for name, value in (data.get("external_ids") or {}).items():
        keys.add(f"xid:{name}:{value}")
    interactions = {
        (r.source, r.object_type, r.source_id)
        for r in conn.execute(
            select(it.c.source, it.c.object_type, it.c.source_id).where(it.c.customer_id.in_(id_list))
        )
    }
    keys.update(source_key(*ref) for ref in links)
    return _Person(ids=ids, links=links, refs=set(links) | interactions, ledger_keys=keys, stored_keys=stored)


def _erase_in_sources(
    adapters: Mapping[str, Adapter], links: Sequence[tuple[str, str, str]], unavailable: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, dict[RecordRef, str]]]:
    """Ask each source to erase its records: (source -> status, source -> {record: error} still to erase)."""
    by_source: dict[str, list[RecordRef]] = {}
    for source, object_type, source_id in links:
        by_source.setdefault(source, []).append(RecordRef(object_type, source_id))
    status: dict[str, str] = {}
    failures: dict[str, dict[RecordRef, str]] = {}
    for source, refs in sorted(by_source.items()):
        if source in unavailable:
            status[source] = f"failed: {unavailable[source]}"
            failures[source] = dict.fromkeys(refs, unavailable[source])
            continue
        adapter = adapters.get(source)
        if adapter is None:
            status[source] = "source not configured"
            continue
        status[source], failed = _erase_in_source(source, adapter, refs)
        if failed:
            failures[source] = failed
    return status, failures


def _erase_in_source(source: str, adapter: Adapter, refs: Sequence[RecordRef]) -> tuple[str, dict[RecordRef, str]]:
    """Ask one adapter to erase ``refs``: its status (``erased`` / ``failed: …`` / ``not supported by the
    adapter``) and the records it did not confirm, with the reason."""
    if "erase" not in adapter.capabilities:
        return "not supported by the adapter", {}
    try:
        results = adapter.erase(list(refs))
    except NotImplementedError:
        return "not supported by the adapter", {}
    except Exception as exc:  # reported per source; the store is cleaned regardless
        logger.warning("erasure in %s failed: %s", source, exc)
        reason = f"{type(exc).__name__}: {exc}"
        return f"failed: {reason}", dict.fromkeys(refs, reason)
    by_key = {r.key: r for r in results}
    failed: dict[RecordRef, str] = {}
    for ref in refs:
        result = by_key.get(f"{ref.object_type}:{ref.source_id}")
        if result is None:
            failed[ref] = "no answer"
        elif not result.ok:
            failed[ref] = str(result.error)
    if failed:
        return "failed: " + "; ".join(f"{r.object_type}:{r.source_id}: {e}" for r, e in failed.items()), failed
    return "erased", {}


@dataclass
class ErasureRetryReport:
    """The outcome of :func:`retry_erasures`, per source.

    :param erased: records the CRM confirmed now.
    :param pending: records still to erase.
    :param errors: why records are still pending (the last error, or why the source was not asked).
    """

    erased: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether nothing is left to erase."""
        return not any(self.pending.values())

    def to_json(self) -> dict[str, Any]:
        return {"erased": dict(self.erased), "pending": dict(self.pending), "errors": dict(self.errors),
                "ok": self.ok}


def pending_erasures(conn: Connection) -> list[Any]:
    """Rows of ``erasure_pending`` (source, object_type, source_id, customer_id, requested_at, attempts,
    last_attempt_at, last_error), oldest request first."""
    p = schema.erasure_pending
    return list(conn.execute(select(p).order_by(p.c.requested_at, p.c.source, p.c.object_type, p.c.source_id)))


def retry_erasures(
    store: Store,
    adapters: Mapping[str, Adapter],
    *,
    now: datetime | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> ErasureRetryReport:
    """Ask the CRMs again to erase the records of forgotten people they did not confirm before.

    Confirmed records leave ``erasure_pending`` and the ledger's status of their source becomes ``erased`` once
    none of the person's records in it is pending; the others count another attempt with the new error. A source
    without an adapter (not configured, or in ``unavailable``) is not asked; its records stay pending.
    """
    now = now or utcnow()
    unavailable = unavailable or {}
    p, led = schema.erasure_pending, schema.erasure_ledger
    with store.connect() as conn:
        rows = pending_erasures(conn)
    by_source: dict[str, list[Any]] = {}
    for row in rows:
        by_source.setdefault(row.source, []).append(row)
    report = ErasureRetryReport()
    for source, items in sorted(by_source.items()):
        adapter = adapters.get(source)
        report.erased[source] = 0
        report.pending[source] = len(items)
        if source in unavailable or adapter is None:
            report.errors[source] = unavailable.get(source, "source not configured")
            continue
        refs = [RecordRef(r.object_type, r.source_id) for r in items]
        status, failed = _erase_in_source(source, adapter, refs)
        if not failed and status != "erased":  # not supported (any more): nothing was asked
            report.errors[source] = status
            continue
        with store.begin() as conn:
            done = [ref for ref in refs if ref not in failed]
            for part in chunked(done, 300):
                keys = [(source, r.object_type, r.source_id) for r in part]
                conn.execute(delete(p).where(tuple_(p.c.source, p.c.object_type, p.c.source_id).in_(keys)))
            for ref, error in failed.items():
                conn.execute(p.update().where(p.c.source == source, p.c.object_type == ref.object_type,
                                              p.c.source_id == ref.source_id)
                             .values(attempts=p.c.attempts + 1, last_attempt_at=now, last_error=error[:2000]))
            owner = {RecordRef(r.object_type, r.source_id): r.customer_id for r in items}
            for cid in sorted(set(owner.values())):
                left = [f"{ref.object_type}:{ref.source_id}: {error}" for ref, error in failed.items()
                        if owner[ref] == cid]
                stored = conn.execute(select(led.c.sources_status).where(led.c.customer_id == cid).limit(1))
                current = dict(stored.scalar_one_or_none() or {})
                current[source] = ("failed: " + "; ".join(left)) if left else "erased"
                conn.execute(led.update().where(led.c.customer_id == cid).values(sources_status=current))
        report.erased[source] = len(refs) - len(failed)
        report.pending[source] = len(failed)
        if failed:
            report.errors[source] = status.removeprefix("failed: ")
        logger.info("erasure retry in %s: %d erased, %d still pending", source, len(refs) - len(failed),
                    len(failed))
    return report


def _delete(conn: Connection, person: _Person, now: datetime) -> dict[str, int]:
    s = schema
    ids = sorted(person.ids)
    refs = sorted(person.refs)
    counts: dict[str, int] = {}

    def run(name: str, stmt: Any) -> None:
        counts[name] = counts.get(name, 0) + int(conn.execute(stmt).rowcount or 0)

    def by_ref(table: Any) -> Iterable[Any]:
        cols = [table.c.source, table.c.object_type, table.c.source_id]
        for part in chunked(refs, 300):
            yield tuple_(*cols).in_(list(part))

    run("customers", delete(s.customers).where(s.customers.c.id.in_(ids)))
    run(
        "customer_aliases",
        delete(s.customer_aliases).where(
            or_(s.customer_aliases.c.customer_id.in_(ids), s.customer_aliases.c.alias_id.in_(ids))
        ),
    )
    ik = s.identity_keys
    if person.stored_keys:
        record = tuple_(ik.c.source, ik.c.object_type, ik.c.source_id)
        for part in chunked(sorted(person.links), 300):
            run("identity_keys", delete(ik).where(ik.c.key.in_(sorted(person.stored_keys)),
                                                  record.in_(list(part))))
    for table in (s.source_links, s.traits, s.trait_history, s.events, s.interactions):
        run(table.name, delete(table).where(table.c.customer_id.in_(ids)))
    run("outbox", delete(s.outbox).where(s.outbox.c.customer_id.in_(ids)))
    for cond in by_ref(s.source_records):
        run("source_records", delete(s.source_records).where(cond))
    for cond in by_ref(s.writeback_state):
        run("writeback_state", delete(s.writeback_state).where(cond))
    for cond in by_ref(s.outbox):
        run("outbox", delete(s.outbox).where(cond))
    q = s.quarantine
    for part in chunked(refs, 300):
        pairs = [(src, sid) for src, _, sid in part]
        run("quarantine", delete(q).where(tuple_(q.c.source, q.c.source_id).in_(pairs)))
    counts["inbox"] = _redact_inbox(conn, person, now)
    return {k: v for k, v in counts.items() if v}


#: what a webhook event that mentioned an erased person keeps: its id (so a redelivery is still recognised)
_REDACTED = {"redacted": "cxbridge forget"}


def _redact_inbox(conn: Connection, person: _Person, now: datetime) -> int:
    """Redact the stored webhook events (``inbox``) that mention the person; returns how many.

    Every stored event is read (the inbox holds the webhook deliveries of all sources); an event mentions the
    person when :func:`_mentions` finds one of their records' ids under a record-id key in an event of that
    record's source, or one of their email addresses or phone numbers in a text value. The row keeps its event id
    and gets the status ``erased`` (not re-processed: the person is gone, and the next poll re-reads anything
    else).
    """
    ib = schema.inbox
    ids: dict[str, set[str]] = {}
    for source, _object_type, source_id in person.links:
        ids.setdefault(source, set()).add(source_id)
    emails = {k[6:] for k in person.ledger_keys if k.startswith("email:")}
    phones = {_digits(k[6:]) for k in person.ledger_keys if k.startswith("phone:")}
    hits = [
        row.id for row in conn.execute(select(ib.c.id, ib.c.source, ib.c.payload).order_by(ib.c.id))
        if row.payload != _REDACTED and _mentions(row.payload, ids.get(row.source, set()), emails, phones)
    ]
    for part in chunked(hits, 500):
        conn.execute(update(ib).where(ib.c.id.in_(part)).values(
            payload=_REDACTED, status="erased", processed_at=now, error=None))
    return len(hits)


#: keys of webhook payloads that hold record ids (HubSpot: ``objectId``, ``primaryObjectId``,
#: ``mergedObjectIds``, ``fromObjectId``...; Salesforce change events: ``recordIds``) -- not ``eventId``,
#: ``subscriptionId``, ``portalId`` or ``appId``, which are small numbers too
_RECORD_ID_KEYS = ("objectid", "objectids", "recordid", "recordids", "sourceid", "source_id")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _mentions(
    value: Any, ids: set[str], emails: set[str], phones: set[str], key: str = "", depth: int = 0
) -> bool:
    """Whether a webhook payload mentions a person: one of ``ids`` (record ids in the event's source) as the
    value of a record-id key (:data:`_RECORD_ID_KEYS`); one of ``emails`` as a text value or inside a longer
    text (a note, a message: any case); one of ``phones`` as a text value or inside a longer text in
    international form (compared digit by digit: ``+49 30 123456`` is ``+4930123456``; a national form is not
    recognised). Nested objects and lists are searched to a depth of 8."""
    if depth > 8:
        return False
    if isinstance(value, dict):
        return any(_mentions(v, ids, emails, phones, str(k), depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_mentions(v, ids, emails, phones, key, depth + 1) for v in value)
    if isinstance(value, bool) or value is None:
        return False
    text = str(value)
    if ids and key.lower().endswith(_RECORD_ID_KEYS) and text in ids:
        return True
    if isinstance(value, str):
        if emails and "@" in text and _mentions_email(text, emails):
            return True
        if phones and len(text) >= 6:
            if _digits(text) in phones or ("+" in text and _mentions_phone(text, phones)):
                return True
    return False


#: an email address inside a text: no spaces, nor the quotes, brackets and separators that surround one
_EMAIL_IN_TEXT = re.compile(r"[^\s<>()\[\]{}\"',;:]+@[^\s<>()\[\]{}\"',;:]+")
#: an international phone number inside a text: "+", then digit groups joined by spaces, dots, dashes,
#: slashes or brackets
_PHONE_IN_TEXT = re.compile(r"\+\d[\d\s./()\-]*\d")
_DIGIT_GROUPS = re.compile(r"\d+")


def _mentions_email(text: str, emails: set[str]) -> bool:
    if text.strip().lower() in emails:
        return True
    return any(m.group().lower().rstrip(".") in emails for m in _EMAIL_IN_TEXT.finditer(text))


def _mentions_phone(text: str, phones: set[str]) -> bool:
    """A number of ``phones`` written in international form inside ``text``; the digit groups after a "+" are
    joined one by one, so a number followed by other digits (``+49 30 123456 2x``) is still found."""
    for match in _PHONE_IN_TEXT.finditer(text):
        digits = ""
        for group in _DIGIT_GROUPS.findall(match.group()):
            digits += group
            if digits in phones:
                return True
    return False
