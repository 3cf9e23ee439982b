"""The objects the adapter reads, as streams with default field lists and canonical mappings.

Field names are the standard API names (Salesforce Object Reference). Fields a given org lacks (no
``MasterRecordId`` on Opportunity, person accounts, disabled features) are dropped after describe, so the
queries never name a field that does not exist. Custom ``__c`` fields come from describe and can be mapped
in the config (``mapping = { "custom.tier" = "Tier__c" }``) without code.

Derived fields: Opportunity, Task and Event rows get ``cx__type`` / ``cx__channel`` (the canonical interaction
type / channel computed from ``IsWon`` / ``IsClosed`` / ``TaskSubtype``), because a declarative mapping cannot
express a condition. Every other field is passed through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cxbridge.adapters import Entity, MappingSpec, StreamInfo

__all__ = ["OBJECTS", "ObjectSpec", "derive_fields", "stream_name"]

_ADDRESS = {
    "addresses.0.line1": "MailingStreet",
    "addresses.0.city": "MailingCity",
    "addresses.0.region": "MailingState",
    "addresses.0.postal_code": "MailingPostalCode",
    "addresses.0.country": "MailingCountry",
}


@dataclass(frozen=True)
class ObjectSpec:
    """How one Salesforce object becomes a stream."""

    object_type: str
    stream: str
    entity: Entity
    fields: tuple[str, ...]
    mapping: MappingSpec = field(default_factory=dict)
    customer_object: str | None = None

    def info(self) -> StreamInfo:
        return StreamInfo(
            name=self.stream,
            object_type=self.object_type,
            entity=self.entity,
            default_mapping=dict(self.mapping),
            customer_object=self.customer_object,
            incremental=True,
            # Tombstones ARE reported (queryAll IsDeleted rows, deleted/), but records purged longer ago than
            # the deleted/ window can only be found by listing ids; the engine does that on full runs
            # (`cxbridge sync --full`) for streams that declare supports_deletes=False.
            supports_deletes=False,
        )


_SYSTEM = ("Id", "IsDeleted", "SystemModstamp", "CreatedDate", "LastModifiedDate")

OBJECTS: dict[str, ObjectSpec] = {
    spec.object_type: spec
    for spec in (
        ObjectSpec(
            "Account",
            "accounts",
            "organization",
            (*_SYSTEM, "MasterRecordId", "Name", "Website", "Industry", "BillingCountry", "NumberOfEmployees",
             "AnnualRevenue", "Phone"),
            {"name": "Name", "domain": "Website", "industry": "Industry", "country": "BillingCountry",
             "employees": "NumberOfEmployees", "annual_revenue": "AnnualRevenue"},
        ),
        ObjectSpec(
            "Contact",
            "contacts",
            "customer",
            (*_SYSTEM, "MasterRecordId", "FirstName", "LastName", "Name", "Email", "Phone", "MobilePhone",
             "AccountId", "Title", "Birthdate", "HasOptedOutOfEmail", "DoNotCall", "MailingStreet", "MailingCity",
             "MailingState", "MailingPostalCode", "MailingCountry"),
            {"first_name": "FirstName", "last_name": "LastName", "full_name": "Name", "emails": ["Email"],
             "phones": ["Phone", "MobilePhone"], "organization_ref": "AccountId",
             "demographics.job_title": "Title", "demographics.birth_date": "Birthdate",
             "consent.email_opt_out": "HasOptedOutOfEmail", "consent.phone_opt_out": "DoNotCall", **_ADDRESS},
        ),
        ObjectSpec(
            "Lead",
            "leads",
            "customer",
            (*_SYSTEM, "MasterRecordId", "FirstName", "LastName", "Name", "Email", "Phone", "MobilePhone",
             "Company", "Title", "Industry", "HasOptedOutOfEmail", "DoNotCall", "Status", "IsConverted",
             "ConvertedContactId", "ConvertedAccountId", "ConvertedDate", "Street", "City", "State",
             "PostalCode", "Country"),
            {"first_name": "FirstName", "last_name": "LastName", "full_name": "Name", "emails": ["Email"],
             "phones": ["Phone", "MobilePhone"], "demographics.job_title": "Title",
             "demographics.industry": "Industry", "consent.email_opt_out": "HasOptedOutOfEmail",
             "consent.phone_opt_out": "DoNotCall", "addresses.0.line1": "Street", "addresses.0.city": "City",
             "addresses.0.region": "State", "addresses.0.postal_code": "PostalCode",
             "addresses.0.country": "Country", "custom.lead_company": "Company"},
        ),
        ObjectSpec(
            "Opportunity",
            "opportunities",
            "interaction",
            (*_SYSTEM, "Name", "AccountId", "ContactId", "Amount", "CurrencyIsoCode", "CloseDate", "StageName",
             "IsClosed", "IsWon", "Description"),
            {"customer_ref": "ContactId", "channel": "=sales", "type": "cx__type", "occurred_at": "CloseDate",
             "amount": "Amount", "currency": "CurrencyIsoCode", "subject": "Name", "content": "Description"},
            customer_object="Contact",
        ),
        ObjectSpec(
            "Task",
            "tasks",
            "interaction",
            (*_SYSTEM, "WhoId", "WhatId", "Subject", "Description", "ActivityDate", "Status", "Priority",
             "TaskSubtype", "CallType", "IsClosed"),
            {"customer_ref": "WhoId", "channel": "cx__channel", "type": "cx__type", "occurred_at": "CreatedDate",
             "subject": "Subject", "content": "Description"},
            customer_object="Contact",
        ),
        ObjectSpec(
            "Event",
            "events",
            "interaction",
            (*_SYSTEM, "WhoId", "WhatId", "Subject", "Description", "StartDateTime", "EndDateTime", "Location",
             "EventSubtype"),
            {"customer_ref": "WhoId", "channel": "=other", "type": "=meeting", "occurred_at": "StartDateTime",
             "subject": "Subject", "content": "Description"},
            customer_object="Contact",
        ),
        ObjectSpec(
            "Case",
            "cases",
            "interaction",
            (*_SYSTEM, "MasterRecordId", "ContactId", "AccountId", "Subject", "Description", "Status", "Origin",
             "Priority", "CaseNumber", "ClosedDate"),
            {"customer_ref": "ContactId", "channel": "=support", "type": "=ticket", "occurred_at": "CreatedDate",
             "subject": "Subject", "content": "Description"},
            customer_object="Contact",
        ),
    )
}

_BY_STREAM = {spec.stream: spec for spec in OBJECTS.values()}


def stream_name(object_type: str) -> str:
    """The stream name of an object (``Contact`` -> ``contacts``; custom objects: lower-cased API name)."""
    spec = OBJECTS.get(object_type)
    return spec.stream if spec else object_type.lower()


def spec_for_stream(stream: str) -> ObjectSpec | None:
    return _BY_STREAM.get(stream)


_TASK_CHANNEL = {"Call": ("phone", "call"), "Email": ("email", "email"), "ListEmail": ("email", "email"),
                 "Cadence": ("other", "task"), "LinkedIn": ("social", "task")}


def derive_fields(object_type: str, row: dict[str, Any]) -> None:
    """Add the documented ``cx__*`` helper fields to a raw row (in place)."""
    if object_type == "Opportunity":
        if row.get("IsWon"):
            row["cx__type"] = "deal_won"
        elif row.get("IsClosed"):
            row["cx__type"] = "deal_lost"
        else:
            row["cx__type"] = "other"
    elif object_type == "Task":
        channel, kind = _TASK_CHANNEL.get(str(row.get("TaskSubtype") or ""), ("other", "task"))
        row["cx__channel"], row["cx__type"] = channel, kind
