"""Default field maps of the HubSpot streams and the few values derived from raw properties.

Raw HubSpot properties are kept untouched in ``SourceRecord.fields``. A handful of values need HubSpot
knowledge to become canonical (an email's ``INCOMING_EMAIL`` direction, a deal's ``closedwon`` stage, the
contact an engagement belongs to); the adapter adds them under the reserved key ``_cx`` so the declarative
mapping can reference them (``"_cx.contact_id"``). Everything else is plain property names, so a config can
re-map or extend any stream without code::

    [sources.hubspot.streams.contacts]
    mapping = { "custom.loyalty_tier" = "loyalty_tier", "external_ids.erp_no" = "erp_number" }
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cxbridge.adapters import MappingSpec

__all__ = ["DEFAULT_MAPPINGS", "derive", "mapped_properties"]

_INTERACTION_COMMON: dict[str, str | list[str]] = {
    "customer_ref": "_cx.contact_id",
    "occurred_at": ["hs_timestamp", "createdate"],
}

DEFAULT_MAPPINGS: dict[str, MappingSpec] = {
    "contacts": {
        "first_name": "firstname",
        "last_name": "lastname",
        "emails": ["email"],
        "phones": ["phone", "mobilephone"],
        "organization_ref": "associatedcompanyid",
        "demographics.job_title": "jobtitle",
        "demographics.locale": "hs_language",
        "demographics.country": "country",
        "addresses.0.line1": "address",
        "addresses.0.city": "city",
        "addresses.0.region": "state",
        "addresses.0.postal_code": "zip",
        "consent.email_opt_out": "hs_email_optout",
        "custom.lifecyclestage": "lifecyclestage",
    },
    "companies": {
        "name": "name",
        "domain": "domain",
        "industry": "industry",
        "country": "country",
        "employees": "numberofemployees",
        "annual_revenue": "annualrevenue",
    },
    "deals": {
        "customer_ref": "_cx.contact_id",
        "type": "_cx.type",
        "channel": "=sales",
        "occurred_at": ["closedate", "createdate"],
        "amount": "amount",
        "currency": "deal_currency_code",
        "subject": "dealname",
        "custom.dealstage": "dealstage",
    },
    "tickets": {
        "customer_ref": "_cx.contact_id",
        "type": "=ticket",
        "channel": "=support",
        "occurred_at": "createdate",
        "subject": "subject",
        "content": "content",
        "custom.priority": "hs_ticket_priority",
        "custom.stage": "hs_pipeline_stage",
    },
    "notes": {**_INTERACTION_COMMON, "type": "=note", "channel": "=other", "content": "hs_note_body"},
    "calls": {
        **_INTERACTION_COMMON,
        "type": "=call",
        "channel": "=phone",
        "subject": "hs_call_title",
        "content": "hs_call_body",
        "direction": "_cx.direction",
        "custom.duration_ms": "hs_call_duration",
    },
    "emails": {
        **_INTERACTION_COMMON,
        "type": "=email",
        "channel": "=email",
        "subject": "hs_email_subject",
        "content": "hs_email_text",
        "direction": "_cx.direction",
    },
    "meetings": {
        **_INTERACTION_COMMON,
        "occurred_at": ["hs_meeting_start_time", "hs_timestamp", "createdate"],
        "type": "=meeting",
        "channel": "=sales",
        "subject": "hs_meeting_title",
        "content": "hs_meeting_body",
    },
    "tasks": {
        **_INTERACTION_COMMON,
        "type": "=task",
        "channel": "=other",
        "subject": "hs_task_subject",
        "content": "hs_task_body",
        "custom.status": "hs_task_status",
        "custom.priority": "hs_task_priority",
    },
}

_DIRECTIONS = {
    "INBOUND": "inbound", "OUTBOUND": "outbound",  # calls (hs_call_direction)
    "INCOMING_EMAIL": "inbound", "EMAIL": "outbound", "FORWARDED_EMAIL": "outbound",  # hs_email_direction
}
_DEAL_TYPES = {"closedwon": "deal_won", "closedlost": "deal_lost"}


def mapped_properties(mapping: Mapping[str, str | list[str]]) -> set[str]:
    """The HubSpot properties a field map reads (constants and ``_cx`` values excluded)."""
    names: set[str] = set()
    for expr in mapping.values():
        for item in [expr] if isinstance(expr, str) else expr:
            if item.startswith("=") or item.startswith("_cx."):
                continue
            names.add(item.split(".", 1)[0])
    return names


def derive(stream: str, props: Mapping[str, Any], associations: Mapping[str, list[str]]) -> dict[str, Any]:
    """The ``_cx`` values of one record (see module docs)."""
    out: dict[str, Any] = {}
    contacts = associations.get("contacts") or []
    if contacts:
        out["contact_id"] = contacts[0]
    direction = props.get("hs_call_direction") or props.get("hs_email_direction")
    if direction:
        out["direction"] = _DIRECTIONS.get(str(direction).upper(), "none")
    if stream == "deals":
        out["type"] = _DEAL_TYPES.get(str(props.get("dealstage") or "").lower(), "other")
    return out
