"""The canonical customer model (ARCHITECTURE §3).

Every adapter maps its CRM's records onto these types; every plugin reads them. They are pydantic v2 models,
so they validate on construction and export a JSON schema (:func:`json_schema`).

- :class:`SourceRecord` -- one raw record as a CRM returned it (fields untouched), with its identity in the
  source, its modification stamp and its deleted / merged-into flags. Adapters yield these.
- :class:`Customer` -- the golden record cxbridge assembles from every linked source record, with a stable id,
  per-field provenance, consent, and the namespaced traits plugins compute.
- :class:`Organization` -- an account / company.
- :class:`Interaction` -- one touchpoint (purchase, call, ticket, survey response, social mention...).

The five kinds of customer data map as follows: demographic (:class:`Demographics`), transactional
(purchase :class:`Interaction` with amount and currency), contextual (``Interaction.context``: device,
location, channel, local time), behavioural (interaction history, web events) and social-network
(``Interaction`` on the ``social`` channel, ``Customer.social_profiles``).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, TypeVar

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Address",
    "Channel",
    "Consent",
    "Customer",
    "Demographics",
    "Direction",
    "Interaction",
    "InteractionType",
    "Organization",
    "Provenance",
    "SocialProfile",
    "SourceLink",
    "SourceRecord",
    "Trait",
    "TraitType",
    "content_hash",
    "json_schema",
    "normalize_email",
    "normalize_phone",
]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(value: str) -> str:
    """Lower-case and trim an email address; raise ``ValueError`` if it is not one.

    Gmail-style dots and ``+tags`` are kept: they are different mailboxes for most providers.
    """
    email = value.strip().lower()
    if not _EMAIL_RE.match(email):
        raise ValueError(f"not an email address: {value!r}")
    return email


def normalize_phone(value: str, default_region: str | None = "US") -> str:
    """Return a phone number in E.164 (``+4930123456``); raise ``ValueError`` if it is not a valid number.

    :param value: the number as typed in a CRM (``(030) 123 456``, ``+49 30 123456``, ``0049...``).
    :param default_region: ISO country used when the number has no country code.
    """
    raw = value.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        parsed = phonenumbers.parse(raw, None if raw.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {value!r} ({exc})") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"not a possible phone number: {value!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def content_hash(fields: dict[str, Any]) -> str:
    """A stable hash of a record's fields (key order does not matter); used to skip unchanged records."""
    blob = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


_M = TypeVar("_M", bound=BaseModel)


def _assume_valid(cls: type[_M], values: dict[str, Any]) -> _M:
    """A model from values that are valid already (every field given), without validation: what
    ``model_construct`` does minus its per-field default handling."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(values))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------------------------
# Source records
# --------------------------------------------------------------------------------------------------------------


class SourceRecord(_Model):
    """One record as a CRM returned it. Adapters yield these in pages; the sync engine maps them.

    The identity of a record is ``(source, object_type, source_id)``; it is upserted idempotently on that key.
    """

    source: str = Field(description="Configured source name, e.g. 'hubspot-eu'.")
    object_type: str = Field(description="The CRM's object type: 'contacts', 'Contact', 'customers'...")
    source_id: str = Field(description="The record's id in the CRM.")
    modstamp: datetime | None = Field(None, description="Last modification time in the CRM (UTC).")
    fields: dict[str, Any] = Field(default_factory=dict, description="Raw fields, untouched.")
    deleted: bool = Field(False, description="Deleted / archived in the CRM: becomes a tombstone.")
    merged_into: str | None = Field(None, description="Source id of the record this one was merged into.")
    associations: dict[str, list[str]] = Field(
        default_factory=dict, description="Ids of associated records by object type (e.g. {'contacts': ['1']})."
    )

    @field_validator("modstamp")
    @classmethod
    def _tz(cls, value: datetime | None) -> datetime | None:
        return _utc(value) if value is not None else None

    @classmethod
    def trusted(
        cls,
        source: str,
        object_type: str,
        source_id: str,
        modstamp: datetime | None,
        fields: dict[str, Any],
        deleted: bool = False,
        merged_into: str | None = None,
        associations: dict[str, list[str]] | None = None,
    ) -> SourceRecord:
        """A record built without validation, for adapters' hot paths, from values that already satisfy the
        model: ``modstamp`` aware UTC or None, ``fields`` JSON-safe, ids strings. About 5x cheaper than
        ``model_construct`` (which handles defaults field by field); an adapter's tests should compare what it
        builds with validated records."""
        return _assume_valid(cls, {
            "source": source, "object_type": object_type, "source_id": source_id, "modstamp": modstamp,
            "fields": fields, "deleted": deleted, "merged_into": merged_into,
            "associations": {} if associations is None else associations,
        })

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.object_type, self.source_id)

    def hash(self) -> str:
        """Content hash over fields, flags and associations (not the modstamp)."""
        return content_hash(
            {"f": self.fields, "d": self.deleted, "m": self.merged_into, "a": self.associations}
        )


# --------------------------------------------------------------------------------------------------------------
# Customer parts
# --------------------------------------------------------------------------------------------------------------


class Address(_Frozen):
    """A postal address. ``kind`` is billing / shipping / home / work / other."""

    kind: str = "other"
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = Field(None, description="ISO 3166-1 alpha-2 where known.")


class Demographics(_Model):
    """Demographic attributes."""

    birth_date: date | None = None
    gender: str | None = None
    locale: str | None = Field(None, description="BCP 47, e.g. 'de-DE'.")
    country: str | None = None
    industry: str | None = None
    job_title: str | None = None


class Consent(_Model):
    """Per-channel opt-outs and erasure state. cxbridge never acts on a channel a customer opted out of."""

    email_opt_out: bool = False
    phone_opt_out: bool = False
    sms_opt_out: bool = False
    processing_opt_out: bool = Field(False, description="Objects to profiling / automated processing.")
    erased: bool = Field(False, description="Erased on request (GDPR art. 17); kept only as a tombstone.")
    updated_at: datetime | None = None

    def allows(self, channel: str) -> bool:
        """Whether an action on ``channel`` (email, phone, sms, processing, writeback) is allowed."""
        if self.erased:
            return False
        if channel in ("processing", "writeback"):
            return not self.processing_opt_out
        return not getattr(self, f"{channel}_opt_out", False)


TraitType = Literal["string", "number", "integer", "boolean", "datetime", "json"]


class Trait(_Model):
    """A namespaced value a plugin computed for a customer (``segments.rfm_segment = 'Champions'``)."""

    name: str = Field(description="Namespaced name '<namespace>.<key>', e.g. 'segments.tier'.")
    value: Any
    type: TraitType = "string"
    producer: str = Field(description="The plugin that computed it.")
    computed_at: datetime

    @field_validator("name")
    @classmethod
    def _namespaced(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+", value):
            raise ValueError(f"trait name must be '<namespace>.<key>' in lower snake case, got {value!r}")
        return value


class SourceLink(_Frozen):
    """A source record a golden record was assembled from."""

    source: str
    object_type: str
    source_id: str
    linked_at: datetime | None = None
    rule: str | None = Field(None, description="Why it was linked: 'email', 'phone', 'xid:erp_no', 'new'...")


class Provenance(_Frozen):
    """Where a golden field's value came from."""

    source: str
    object_type: str
    source_id: str
    observed_at: datetime | None = None


class SocialProfile(_Frozen):
    network: str
    handle: str
    url: str | None = None
    followers: int | None = None


class Customer(_Model):
    """The golden record of one person, assembled from every linked source record."""

    id: str = Field(description="Stable cxbridge id (survives merges; merged ids become aliases).")
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    emails: list[str] = Field(default_factory=list, description="Normalized; the first is primary.")
    phones: list[str] = Field(default_factory=list, description="E.164; the first is primary.")
    addresses: list[Address] = Field(default_factory=list)
    organization_id: str | None = None
    demographics: Demographics = Field(default_factory=Demographics)
    consent: Consent = Field(default_factory=Consent)
    social_profiles: list[SocialProfile] = Field(default_factory=list)
    external_ids: dict[str, str] = Field(default_factory=dict, description="Cross-system ids, e.g. erp_no.")
    custom: dict[str, Any] = Field(default_factory=dict, description="Mapped source fields without a home.")
    traits: dict[str, Trait] = Field(default_factory=dict)
    links: list[SourceLink] = Field(default_factory=list)
    provenance: dict[str, Provenance] = Field(default_factory=dict, description="Golden field -> source.")
    aliases: list[str] = Field(default_factory=list, description="Ids of golden records merged into this one.")
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_validator("emails")
    @classmethod
    def _emails(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(normalize_email(v) for v in values))

    @field_validator("phones")
    @classmethod
    def _phones(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(normalize_phone(v) for v in values))

    @property
    def display_name(self) -> str:
        name = self.full_name or " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or (self.emails[0] if self.emails else self.id)

    def trait(self, name: str, default: Any = None) -> Any:
        """The value of trait ``name``, or ``default``."""
        trait = self.traits.get(name)
        return trait.value if trait is not None else default


class Organization(_Model):
    """An account / company."""

    id: str
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    country: str | None = None
    employees: int | None = None
    annual_revenue: Decimal | None = None
    external_ids: dict[str, str] = Field(default_factory=dict)
    custom: dict[str, Any] = Field(default_factory=dict)
    links: list[SourceLink] = Field(default_factory=list)


class Channel(str, Enum):
    EMAIL = "email"
    PHONE = "phone"
    SMS = "sms"
    WEB = "web"
    STORE = "store"
    CHAT = "chat"
    SOCIAL = "social"
    SURVEY = "survey"
    SALES = "sales"
    SUPPORT = "support"
    OTHER = "other"


class InteractionType(str, Enum):
    PURCHASE = "purchase"
    REFUND = "refund"
    CALL = "call"
    MEETING = "meeting"
    NOTE = "note"
    EMAIL = "email"
    TASK = "task"
    TICKET = "ticket"
    SURVEY_RESPONSE = "survey_response"
    MENTION = "mention"
    DEAL_WON = "deal_won"
    DEAL_LOST = "deal_lost"
    PAGE_VIEW = "page_view"
    OTHER = "other"


class Direction(str, Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    NONE = "none"


class Interaction(_Model):
    """One touchpoint between a customer and the company."""

    id: str = Field(description="Stable cxbridge id.")
    customer_id: str | None = Field(None, description="Golden customer id, once resolved.")
    source: str
    object_type: str
    source_id: str
    channel: Channel = Channel.OTHER
    type: InteractionType = InteractionType.OTHER
    occurred_at: datetime
    direction: Direction = Direction.NONE
    amount: Decimal | None = Field(None, description="Value exchanged; negative for refunds.")
    currency: str | None = Field(None, description="ISO 4217.")
    subject: str | None = None
    content: str | None = None
    sentiment: float | None = Field(None, ge=-1.0, le=1.0)
    context: dict[str, Any] = Field(default_factory=dict, description="Device, location, local time...")
    custom: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _tz(cls, value: datetime) -> datetime:
        return _utc(value)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", code):
            raise ValueError(f"currency must be an ISO 4217 code, got {value!r}")
        return code


def json_schema() -> dict[str, Any]:
    """JSON schema of the canonical model (Customer, Organization, Interaction, SourceRecord)."""
    models: list[type[BaseModel]] = [Customer, Organization, Interaction, SourceRecord]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cxbridge canonical model",
        "definitions": {m.__name__: m.model_json_schema() for m in models},
    }
