"""Read-side queries behind the 360° view, search and status (used by :class:`cxbridge.Bridge` and the CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select

from .errors import NotFound
from .golden import load_customers, resolve_aliases
from .identity.resolver import key_owners
from .models import normalize_email, normalize_phone
from .store import schema as s

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.engine import Connection

    from .bridge import Customer360
    from .models import Customer

__all__ = ["customer_360", "find_customer_id", "search_customers", "status_summary"]


def _live(conn: Connection, customer_id: str) -> str | None:
    survivor = resolve_aliases(conn, [customer_id])[customer_id]
    row = conn.execute(select(s.customers.c.id).where(s.customers.c.id == survivor)).first()
    return survivor if row is not None else None


def find_customer_id(conn: Connection, ref: str, *, default_region: str | None = None) -> str:
    """Resolve ``ref`` (golden id or alias, email, phone, ``source/source_id``) to a live golden id.

    Tried in this order: a golden id or alias; ``source/source_id`` of a linked record; an email (any case,
    surrounding blanks ignored); a phone number in any format (national numbers use ``default_region``;
    ``030/1234567`` is a phone number when no source ``030`` has a record ``1234567``).

    :raises NotFound: nothing matches (one line naming ``ref`` and the accepted forms).
    """
    ref = ref.strip()
    if ref and (found := _live(conn, ref)):
        return found
    if "/" in ref:
        source, _, source_id = ref.partition("/")
        row = conn.execute(
            select(s.source_links.c.customer_id)
            .where(
                s.source_links.c.source == source.strip(),
                s.source_links.c.source_id == source_id.strip(),
                s.source_links.c.customer_id.is_not(None),
            )
            .order_by(s.source_links.c.object_type)
            .limit(1)
        ).first()
        if row is not None and (found := _live(conn, row.customer_id)):
            return found
    keys: list[str] = []
    if "@" in ref:
        try:
            keys.append(f"email:{normalize_email(ref)}")
        except ValueError:
            pass
    elif any(ch.isdigit() for ch in ref):
        try:
            keys.append(f"phone:{normalize_phone(ref, default_region)}")
        except ValueError:
            pass
    for cid in sorted({cid for _key, cid in key_owners(conn, keys)}):
        if found := _live(conn, cid):
            return found
    raise NotFound(f"no customer matches {ref!r} (try an id, an email, a phone number or source/source_id)")


def customer_360(conn: Connection, customer_id: str, *, interactions: int = 50) -> Customer360:
    """Golden record, identities with their last-seen source fields, latest interactions, open writes."""
    from .bridge import Customer360, SourceIdentity
    from .sync.context import interaction_of

    customers = load_customers(conn, [customer_id], include_erased=True)
    if not customers:
        raise NotFound(f"no customer {customer_id!r}")
    customer = customers[0]
    identities = []
    for link in customer.links:
        mirror = conn.execute(
            select(s.source_records.c.modstamp, s.source_records.c.deleted, s.source_records.c.fields).where(
                s.source_records.c.source == link.source,
                s.source_records.c.object_type == link.object_type,
                s.source_records.c.source_id == link.source_id,
            )
        ).first()
        identities.append(
            SourceIdentity(
                source=link.source,
                object_type=link.object_type,
                source_id=link.source_id,
                rule=link.rule,
                modstamp=mirror.modstamp if mirror else None,
                deleted=bool(mirror.deleted) if mirror else False,
                fields=dict(mirror.fields) if mirror else {},
            )
        )
    rows = conn.execute(
        select(s.interactions)
        .where(s.interactions.c.customer_id == customer.id, s.interactions.c.deleted.is_(False))
        .order_by(s.interactions.c.occurred_at.desc(), s.interactions.c.id)
        .limit(interactions)
    )
    timeline = [interaction_of(r) for r in rows]
    open_writes = conn.execute(
        select(func.count()).select_from(s.outbox).where(
            s.outbox.c.customer_id == customer.id, s.outbox.c.status == "pending"
        )
    ).scalar_one()
    events = [
        {"name": e.name, "payload": e.payload, "at": e.at}
        for e in conn.execute(
            select(s.events).where(s.events.c.customer_id == customer.id).order_by(s.events.c.id.desc()).limit(20)
        )
    ]
    return Customer360(customer, identities, timeline, open_writes=int(open_writes), events=events)


def _like(query: str) -> str:
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_customers(
    conn: Connection, query: str, *, limit: int = 20, default_region: str | None = None
) -> list[Customer]:
    """Live customers whose display name, any email or any phone contains ``query`` (case-insensitive).

    A query that is a phone number in any format (``030 1234567``) also finds its E.164 form. ``%`` and
    ``_`` are matched literally.
    """
    text = query.strip().lower()
    if not text:
        return []
    needle = _like(text)
    keys = s.identity_keys
    key_needles: list[ColumnElement[bool]] = [
        keys.c.key.like(f"{kind}:{needle}", escape="\\") for kind in ("email", "phone")
    ]
    if any(ch.isdigit() for ch in text) and "@" not in text:
        try:
            key_needles.append(keys.c.key == f"phone:{normalize_phone(text, default_region)}")
        except ValueError:
            pass
    links = s.source_links
    by_key = select(links.c.customer_id).join(keys, and_(
        keys.c.source == links.c.source, keys.c.object_type == links.c.object_type,
        keys.c.source_id == links.c.source_id)).where(or_(*key_needles))
    ids = [
        r.id
        for r in conn.execute(
            select(s.customers.c.id)
            .where(
                s.customers.c.erased.is_(False),
                or_(
                    func.lower(s.customers.c.display_name).like(needle, escape="\\"),
                    func.lower(s.customers.c.primary_email).like(needle, escape="\\"),
                    s.customers.c.primary_phone.like(needle, escape="\\"),
                    s.customers.c.id.in_(by_key),
                ),
            )
            .order_by(s.customers.c.display_name, s.customers.c.id)
            .limit(limit)
        )
    ]
    return load_customers(conn, ids)


def status_summary(conn: Connection) -> dict[str, Any]:
    """Counts for ``cxbridge status`` and the demo summary."""
    count = lambda table, *where: conn.execute(  # noqa: E731
        select(func.count()).select_from(table).where(*where)
    ).scalar_one()
    links = {
        f"{r.source}/{r.object_type}": r.n
        for r in conn.execute(
            select(s.source_links.c.source, s.source_links.c.object_type, func.count().label("n"))
            .where(s.source_links.c.customer_id.is_not(None))
            .group_by(s.source_links.c.source, s.source_links.c.object_type)
            .order_by(s.source_links.c.source, s.source_links.c.object_type)
        )
    }
    multi = conn.execute(
        select(func.count()).select_from(
            select(s.source_links.c.customer_id)
            .where(s.source_links.c.customer_id.is_not(None))
            .group_by(s.source_links.c.customer_id)
            .having(func.count(func.distinct(s.source_links.c.source)) > 1)
            .subquery()
        )
    ).scalar_one()
    outbox = {
        r.status: r.n
        for r in conn.execute(
            select(s.outbox.c.status, func.count().label("n")).group_by(s.outbox.c.status)
        )
    }
    return {
        "customers": count(s.customers, s.customers.c.erased.is_(False)),
        "customers_in_several_sources": int(multi),
        "aliases": count(s.customer_aliases),
        "links": links,
        "interactions": count(s.interactions, s.interactions.c.deleted.is_(False)),
        "traits": count(s.traits),
        "quarantine_open": count(s.quarantine, s.quarantine.c.status == "open"),
        "plugin_failures": count(s.plugin_failures),
        "outbox": outbox,
    }
