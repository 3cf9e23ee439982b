"""The HubSpot streams: which object, which entity, which properties and associations, and record conversion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cxbridge.adapters import Entity, StreamInfo
from cxbridge.models import SourceRecord

from .mapping import DEFAULT_MAPPINGS, derive, mapped_properties

__all__ = ["OBJECT_TYPE_IDS", "SPECS", "StreamSpec", "modstamp_property", "parse_time", "to_ms", "to_record"]


#: objectTypeId (webhook payloads of ``object.*`` subscriptions, v4 APIs) -> object type name.
#: Source: https://developers.hubspot.com/changelog/public-beta-generic-webhook-subscriptions
OBJECT_TYPE_IDS = {
    "0-1": "contacts", "0-2": "companies", "0-3": "deals", "0-5": "tickets", "0-46": "notes",
    "0-48": "calls", "0-49": "emails", "0-47": "meetings", "0-27": "tasks",
}


@dataclass(frozen=True)
class StreamSpec:
    """One HubSpot object type offered as a stream.

    :param associations: object types whose associated ids the records carry (read inline on list pages,
        through associations v4 batch reads on search pages and targeted re-reads).
    """

    name: str
    entity: Entity
    associations: tuple[str, ...] = ()
    customer_object: str | None = None

    @property
    def object_type(self) -> str:
        return self.name

    @property
    def modstamp(self) -> str:
        return modstamp_property(self.name)

    def base_properties(self) -> set[str]:
        props = mapped_properties(DEFAULT_MAPPINGS.get(self.name, {}))
        props |= {"hs_object_id", self.modstamp, "createdate", "hs_merged_object_ids"}
        if self.name in ("calls", "emails"):
            props.add("hs_call_direction" if self.name == "calls" else "hs_email_direction")
        if self.name == "deals":
            props.add("dealstage")
        return props

    def info(self) -> StreamInfo:
        return StreamInfo(
            name=self.name,
            object_type=self.name,
            entity=self.entity,
            default_mapping=dict(DEFAULT_MAPPINGS.get(self.name, {})),
            customer_object=self.customer_object,
            incremental=True,
            supports_deletes=True,
        )


_INTERACTION = {"entity": "interaction", "associations": ("contacts",), "customer_object": "contacts"}
#: In sync order: organizations, customers, then interactions.
SPECS: dict[str, StreamSpec] = {
    "companies": StreamSpec("companies", "organization"),
    # Contacts link their company through ``associatedcompanyid`` (no association reads needed).
    "contacts": StreamSpec("contacts", "customer"),
    **{name: StreamSpec(name, **_INTERACTION) for name in  # type: ignore[arg-type]
       ("deals", "tickets", "notes", "calls", "emails", "meetings", "tasks")},
}


def modstamp_property(object_type: str) -> str:
    """``lastmodifieddate`` on contacts, ``hs_lastmodifieddate`` on every other object.

    Source: https://developers.hubspot.com/docs/api/crm/search (default properties per object).
    """
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def parse_time(value: Any) -> datetime | None:
    """HubSpot timestamps: ISO 8601 strings or epoch milliseconds."""
    if value in (None, ""):
        return None
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def _assoc_ids(obj: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind, block in (obj.get("associations") or {}).items():
        ids = [str(item["id"]) for item in (block or {}).get("results", []) if "id" in item]
        if ids:
            out[kind] = list(dict.fromkeys(ids))
    return out


def to_record(
    source: str, spec: StreamSpec, obj: Mapping[str, Any], associations: Mapping[str, list[str]] | None = None
) -> list[SourceRecord]:
    """One HubSpot object JSON -> its SourceRecord, plus alias records for ids merged into it.

    A record listing ``hs_merged_object_ids`` is the survivor of a merge; every merged id becomes a record
    with ``merged_into`` set (and ``deleted``: the id no longer exists in HubSpot), so the golden id stays
    stable and the old id becomes an alias.
    """
    props = dict(obj.get("properties") or {})
    source_id = str(obj.get("id") or props.get("hs_object_id"))
    links = dict(associations) if associations is not None else _assoc_ids(obj)
    modstamp = parse_time(props.get(spec.modstamp)) or parse_time(obj.get("updatedAt"))
    archived = bool(obj.get("archived"))
    fields = dict(props)
    cx = derive(spec.name, props, links)
    if cx:
        fields["_cx"] = cx
    out = [SourceRecord(source=source, object_type=spec.name, source_id=source_id, modstamp=modstamp,
                        fields=fields if not archived else {"archivedAt": obj.get("archivedAt")},
                        deleted=archived, merged_into=None, associations=links)]
    merged = str(props.get("hs_merged_object_ids") or "")
    for old in (m.strip() for m in merged.split(";")):
        if old and old != source_id:
            out.append(SourceRecord(source=source, object_type=spec.name, source_id=old, modstamp=modstamp,
                                    deleted=True, merged_into=source_id))
    return out
