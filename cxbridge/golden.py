"""Golden records: survivorship over linked source records, and loading customers from the store.

A golden customer is assembled from the mapped patches of every live source record linked to it
(``source_links`` + ``source_records.mapped``). Survivorship picks, per flat field (``first_name``,
``demographics.country``, ``external_ids.erp_no``...), the value of the best-ranked record that has one:

- ``source_priority``: records of sources earlier in ``identity.source_priority`` win (unlisted sources come
  last); ties go to the most recent record;
- ``most_recent``: the most recently modified record wins;
- ``most_complete``: the record with the most non-empty fields wins; ties go to the most recent.

The name parts (first, last, full name) are picked together from the best record that has any of them; a
full name from another record is added only when it agrees with those parts (so a golden record never shows
a name that contradicts the most trusted source).
List fields are merged instead of picked: ``emails`` and ``phones`` are the ordered union (the winner's
primary value first), ``addresses`` the de-duplicated union. Consent opt-outs are sticky: if any linked
record says a customer opted out, the golden record says so (a CRM that forgot an opt-out must not undo it).
Every field's :class:`~cxbridge.models.Provenance` names the record its value came from.

Aliases: when golden records merge, the merged ids become rows in ``customer_aliases`` pointing at the
survivor, always the *final* survivor (chains are collapsed when they form), so one lookup resolves any id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, select

from .models import Customer, Provenance, SourceLink, Trait, _assume_valid
from .store import schema as s

__all__ = [
    "Contribution",
    "Survivorship",
    "assemble",
    "assemble_compact",
    "assemble_single",
    "compact_provenance",
    "expand_provenance",
    "golden_fields",
    "load_customers",
    "resolve_aliases",
]

_NOT_GOLDEN = frozenset({"organization_ref", "customer_ref"})
#: Name parts survive together: mixing one source's first name with another's full name shows a person
#: under a name no source uses.
_NAME_GROUP = ("first_name", "last_name", "full_name")
_LIST_FIELDS = ("emails", "phones")
_NESTED = ("demographics", "consent", "external_ids", "custom")
IN_CHUNK = 500


class Contribution(NamedTuple):
    """One linked source record's mapped patch."""

    source: str
    object_type: str
    source_id: str
    modstamp: datetime | None
    patch: Mapping[str, Any]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    tz = value.tzinfo
    if tz is UTC:
        return value
    return value.replace(tzinfo=UTC) if tz is None else value.astimezone(UTC)


def _ts(value: datetime | None) -> float:
    if value is None:
        return float("-inf")
    return (_utc(value) or value).timestamp()


class Survivorship:
    """A survivorship rule.

    :param strategy: ``source_priority``, ``most_recent`` or ``most_complete``.
    :param priority: source names, best first (for ``source_priority``).
    """

    STRATEGIES = ("source_priority", "most_recent", "most_complete")

    def __init__(self, strategy: str = "source_priority", priority: Sequence[str] = ()) -> None:
        if strategy not in self.STRATEGIES:
            raise ValueError(f"unknown survivorship {strategy!r}; use one of {', '.join(self.STRATEGIES)}")
        self.strategy = strategy
        self.rank = {name: i for i, name in enumerate(priority)}

    def order(self, contributions: Sequence[Contribution]) -> list[Contribution]:
        """The contributions best first (deterministic: ties broken by source key)."""
        unlisted = len(self.rank)

        def key(c: Contribution) -> tuple[Any, ...]:
            tie = (c.source, c.object_type, c.source_id)
            if self.strategy == "source_priority":
                return (self.rank.get(c.source, unlisted), -_ts(c.modstamp), tie)
            if self.strategy == "most_recent":
                return (-_ts(c.modstamp), tie)
            filled = sum(1 for k, v in c.patch.items() if k not in _NOT_GOLDEN and v not in (None, "", []))
            return (-filled, -_ts(c.modstamp), tie)

        return sorted(contributions, key=key)


def _prov(c: Contribution) -> dict[str, Any]:
    return {
        "source": c.source,
        "object_type": c.object_type,
        "source_id": c.source_id,
        "observed_at": _utc(c.modstamp).isoformat() if c.modstamp else None,  # type: ignore[union-attr]
    }


def assemble(
    contributions: Sequence[Contribution], rule: Survivorship
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Assemble a golden record from linked patches.

    :returns: ``(data, provenance)``: ``data`` is the nested Customer dump stored in ``customers.data``
        (without id, traits, links, provenance and aliases); ``provenance`` maps flat field -> source.
    """
    ordered = rule.order(contributions) if len(contributions) > 1 else list(contributions)
    flat: dict[str, Any] = {}
    prov: dict[str, dict[str, Any]] = {}
    lists: dict[str, list[Any]] = {}
    addresses: list[dict[str, Any]] = []
    seen_addr: set[tuple[Any, ...]] = set()
    named = next((c for c in ordered if any(c.patch.get(k) for k in _NAME_GROUP)), None)
    if named is not None:
        nprov = _prov(named)
        for key in _NAME_GROUP:
            if named.patch.get(key):
                flat[key] = named.patch[key]
                prov[key] = nprov
        if "full_name" not in flat:
            # another record's full name is used only where it agrees with the chosen first/last name
            parts = " ".join(str(flat[k]) for k in ("first_name", "last_name") if k in flat).casefold()
            for c in ordered:
                full = c.patch.get("full_name")
                if full and " ".join(str(full).split()).casefold() == parts:
                    flat["full_name"], prov["full_name"] = full, _prov(c)
                    break
    for c in ordered:
        cprov: dict[str, Any] | None = None
        for key, value in c.patch.items():
            if key in _NOT_GOLDEN or value is None or key in _NAME_GROUP:
                continue
            if key in _LIST_FIELDS:
                bucket = lists.setdefault(key, [])
                for item in value:
                    if item not in bucket:
                        bucket.append(item)
                if key not in prov and value:
                    prov[key] = cprov = cprov or _prov(c)
            elif key == "addresses":
                for addr in value:
                    ident = tuple(sorted(addr.items()))
                    if ident not in seen_addr:
                        seen_addr.add(ident)
                        addresses.append(dict(addr))
                if "addresses" not in prov and value:
                    prov["addresses"] = cprov = cprov or _prov(c)
            elif key.startswith("consent.") and value is True and flat.get(key) is not True:
                flat[key] = True  # opt-outs are sticky across sources
                prov[key] = cprov = cprov or _prov(c)
            elif key not in flat:
                flat[key] = value
                prov[key] = cprov = cprov or _prov(c)
    data: dict[str, Any] = {"emails": lists.get("emails", []), "phones": lists.get("phones", [])}
    if addresses:
        data["addresses"] = addresses
    for key, value in flat.items():
        head, dot, tail = key.partition(".")
        if dot and head in _NESTED:
            data.setdefault(head, {})[tail] = value
        else:
            data[key] = value
    return data, prov


def assemble_compact(
    contributions: Sequence[Contribution], rule: Survivorship
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`assemble` with provenance in its stored form (:func:`compact_provenance`).

    A golden record with one linked record (most of them) takes :func:`assemble_single`.
    """
    if len(contributions) != 1:
        merged, prov = assemble(contributions, rule)
        return merged, compact_provenance(prov)
    c = contributions[0]
    return assemble_single(c.source, c.object_type, c.source_id, c.modstamp, c.patch)


_LIST, _ADDRESSES, _NAME, _NESTED_KEY, _PLAIN_KEY = range(5)
_PLANS: dict[tuple[str, ...], list[tuple[str, int, str, str]]] = {}


def _plan(keys: tuple[str, ...]) -> list[tuple[str, int, str, str]]:
    """How each key of a patch lands in a golden record: ``(key, kind, head, tail)``. Patches of one stream
    share their keys, so plans are cached by key tuple (bounded: a stream maps a fixed set of targets)."""
    plan = _PLANS.get(keys)
    if plan is None:
        plan = []
        for key in keys:
            if key in _NOT_GOLDEN:
                continue
            head, dot, tail = key.partition(".")
            if key in _LIST_FIELDS:
                kind = _LIST
            elif key == "addresses":
                kind = _ADDRESSES
            elif key in _NAME_GROUP:
                kind = _NAME
            elif dot and head in _NESTED:
                kind = _NESTED_KEY
            else:
                kind = _PLAIN_KEY
            plan.append((key, kind, head, tail))
        if len(_PLANS) < 1024:
            _PLANS[keys] = plan
    return plan


def assemble_single(
    source: str, object_type: str, source_id: str, modstamp: datetime | None, patch: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The golden record of one linked record: every field from it (``assemble`` of one contribution, tested
    equal). Its provenance is stored as ``{"sources": [[source, object_type, source_id, observed_at]]}``
    without a field list: every field of the golden data comes from that record (:func:`expand_provenance`)."""
    data: dict[str, Any] = {"emails": [], "phones": []}
    for key, kind, head, tail in _plan(tuple(patch)):
        value = patch[key]
        if value is None:
            continue
        if kind == _PLAIN_KEY:
            data[key] = value
        elif kind == _NESTED_KEY:
            nested = data.get(head)
            if nested is None:
                data[head] = {tail: value}
            else:
                nested[tail] = value
        elif kind == _LIST:
            data[key] = list(value) if len(value) < 2 else list(dict.fromkeys(value))
        elif kind == _NAME:
            if value:
                data[key] = value
        else:
            seen: set[tuple[Any, ...]] = set()
            out = []
            for addr in value:
                ident = tuple(sorted(addr.items()))
                if ident not in seen:
                    seen.add(ident)
                    out.append(dict(addr))
            if out:
                data["addresses"] = out
    if len(data) == 2 and not data["emails"] and not data["phones"]:
        return data, {"sources": []}
    return data, {"sources": [[source, object_type, source_id, _observed(modstamp)]]}


_LAST_OBSERVED: list[tuple[Any, str | None]] = [(object(), None)]


def _observed(modstamp: datetime | None) -> str | None:
    """``observed_at`` text of a modstamp; records changed together share a stamp, so the last one is kept
    (one tuple swapped at once: threads never see one stamp with another's text)."""
    last = _LAST_OBSERVED[0]
    if last[0] is modstamp or last[0] == modstamp:
        return last[1]
    text = _utc(modstamp).isoformat() if modstamp else None  # type: ignore[union-attr]
    _LAST_OBSERVED[0] = (modstamp, text)
    return text


def compact_provenance(prov: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The stored form of provenance: each source record once, fields pointing at it by index.

    ``{"sources": [[source, object_type, source_id, observed_at], ...], "fields": {"first_name": 0, ...}}``
    -- a golden record usually takes most fields from one record, and repeating it per field made provenance
    the largest part of the ``customers`` table.
    """
    sources: list[list[Any]] = []
    index: dict[tuple[Any, ...], int] = {}
    fields: dict[str, int] = {}
    for name, p in prov.items():
        key = (p["source"], p["object_type"], p["source_id"], p.get("observed_at"))
        if key not in index:
            index[key] = len(sources)
            sources.append(list(key))
        fields[name] = index[key]
    return {"sources": sources, "fields": fields}


def expand_provenance(
    stored: Mapping[str, Any] | None, data: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Field -> provenance dict from the stored form (compact, single-source, or the plain per-field mapping).

    :param data: the golden data the provenance belongs to; needed for the single-source form
        ``{"sources": [one]}``, whose fields are every field of the data.
    """
    if not stored:
        return {}
    if "sources" in stored and "fields" not in stored:
        sources = stored["sources"]
        if not sources or data is None:
            return {}
        src = sources[0]
        one = {"source": src[0], "object_type": src[1], "source_id": src[2], "observed_at": src[3]}
        return {name: dict(one) for name in golden_fields(data)}
    if "fields" in stored and "sources" in stored and isinstance(stored["fields"], Mapping):
        sources = stored["sources"]
        return {
            name: {"source": sources[i][0], "object_type": sources[i][1], "source_id": sources[i][2],
                   "observed_at": sources[i][3]}
            for name, i in stored["fields"].items()
        }
    return {name: dict(p) for name, p in stored.items()}


def golden_fields(data: Mapping[str, Any]) -> list[str]:
    """The flat field names a golden record has values for (``demographics.country``, ``emails``...)."""
    names = []
    for key, value in data.items():
        if key in _LIST_FIELDS or key == "addresses":
            if value:
                names.append(key)
        elif key in _NESTED and isinstance(value, Mapping):
            names.extend(f"{key}.{sub}" for sub in value)
        else:
            names.append(key)
    return names


# ---------------------------------------------------------------------------------------------------- loading


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(ids), IN_CHUNK):
        yield ids[i : i + IN_CHUNK]


_STORED_NORMALIZED = frozenset({"emails", "phones"})


def _provenance_models(
    stored: Mapping[str, Any] | None, data: Mapping[str, Any], cache: dict[tuple[Any, ...], Provenance]
) -> dict[str, Provenance]:
    """Field -> :class:`Provenance`, one (frozen, shared) instance per source record."""
    out: dict[str, Provenance] = {}
    for name, p in expand_provenance(stored, data).items():
        key = (p["source"], p["object_type"], p["source_id"], p.get("observed_at"))
        model = cache.get(key)
        if model is None:
            model = cache[key] = Provenance(source=key[0], object_type=key[1], source_id=key[2],
                                            observed_at=key[3])
        out[name] = model
    return out


_M = TypeVar("_M", bound=BaseModel)


def _trusted(cls: type[_M]) -> Callable[..., _M]:
    """A constructor of ``cls`` for values read back from our own store (validated when they were written).

    Equivalent to ``cls.model_construct(**values)`` when every field is given (tests compare it with
    validated models) at a fraction of its cost; models with aliases or a post-init hook use
    ``model_construct`` itself.
    """
    fields = cls.__pydantic_fields__
    if cls.__pydantic_post_init__ or any(f.alias or f.validation_alias for f in fields.values()):
        return cls.model_construct
    names = tuple(fields)

    def make(**values: Any) -> _M:
        if tuple(values) != names:  # fields left out or in another order: pydantic's own path
            return cls.model_construct(**values)
        return _assume_valid(cls, values)

    return make


def _customer(values: dict[str, Any]) -> Customer:
    """A Customer from stored golden data without re-normalizing what the sync normalized already.

    Emails and phones were validated and normalized when mapped (re-parsing every phone number on each load
    made plugins spend most of their time in ``phonenumbers``); every other field is validated as usual.
    Unknown keys (a store written by a newer version) still fail loudly.
    """
    stored = {k: values.pop(k) for k in _STORED_NORMALIZED if k in values}
    customer = Customer.model_validate(values)
    for key, value in stored.items():
        setattr(customer, key, list(value or []))
    return customer


_TRUSTED_TRAIT = _trusted(Trait)
_TRUSTED_LINK = _trusted(SourceLink)


def resolve_aliases(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    """Map each id to its surviving golden id (ids that are not aliases map to themselves)."""
    wanted = list(dict.fromkeys(ids))
    out = {i: i for i in wanted}
    for part in _chunks(wanted):
        rows = conn.execute(
            select(s.customer_aliases.c.alias_id, s.customer_aliases.c.customer_id).where(
                s.customer_aliases.c.alias_id.in_(part)
            )
        )
        for alias, survivor in rows:
            out[alias] = survivor
    return out


def load_customers(conn: Connection, ids: Sequence[str], *, include_erased: bool = False) -> list[Customer]:
    """Load golden customers with traits, links, provenance and aliases.

    :param ids: golden ids or aliases (resolved to the survivor; each survivor is returned once, in the order
        of first mention). Unknown ids are skipped, and erased customers unless ``include_erased``.
    """
    survivors = list(dict.fromkeys(resolve_aliases(conn, ids).values()))
    if not survivors:
        return []
    rows: dict[str, Any] = {}  # id -> customers row
    traits: dict[str, dict[str, Trait]] = {}
    links: dict[str, list[SourceLink]] = {}
    aliases: dict[str, list[str]] = {}
    for part in _chunks(survivors):
        query = select(s.customers).where(s.customers.c.id.in_(part))
        if not include_erased:
            query = query.where(s.customers.c.erased.is_(False))
        for found in conn.execute(query):
            rows[found.id] = found
        # Traits and links were validated when written (set_traits / the sync): construct without validating
        # again (validation was a third of a load); tests check they equal validated models.
        trait = _TRUSTED_TRAIT
        for t in conn.execute(select(s.traits).where(s.traits.c.customer_id.in_(part))).fetchall():
            traits.setdefault(t.customer_id, {})[t.name] = trait(
                name=t.name, value=t.value, type=t.type, producer=t.producer,
                computed_at=_utc(t.computed_at) or t.computed_at
            )
        link_rows = conn.execute(
            select(s.source_links)
            .where(s.source_links.c.customer_id.in_(part))
            .order_by(s.source_links.c.source, s.source_links.c.object_type, s.source_links.c.source_id)
        )
        source_link = _TRUSTED_LINK
        for link in link_rows.fetchall():
            links.setdefault(link.customer_id, []).append(
                source_link(source=link.source, object_type=link.object_type, source_id=link.source_id,
                            linked_at=_utc(link.linked_at), rule=link.rule)
            )
        alias_rows = conn.execute(
            select(s.customer_aliases.c.alias_id, s.customer_aliases.c.customer_id)
            .where(s.customer_aliases.c.customer_id.in_(part))
            .order_by(s.customer_aliases.c.alias_id)
        )
        for alias, survivor in alias_rows:
            aliases.setdefault(survivor, []).append(alias)
    out: list[Customer] = []
    prov_cache: dict[tuple[Any, ...], Provenance] = {}
    for cid in survivors:
        row = rows.get(cid)
        if row is None:
            continue
        data = dict(row.data or {})
        data.pop("id", None)
        provenance = _provenance_models(row.provenance, data, prov_cache)
        customer = _customer(
            {
                **data,
                "id": cid,
                "traits": traits.get(cid, {}),
                "links": links.get(cid, []),
                "provenance": provenance,
                "aliases": aliases.get(cid, []),
                "created_at": _utc(row.created_at),
                "updated_at": _utc(row.updated_at),
            }
        )
        if row.erased:
            customer.consent.erased = True
        out.append(customer)
    return out
