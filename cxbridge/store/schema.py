"""Store tables (SQLAlchemy 2 Core). ARCHITECTURE §5.

One metadata object; the Alembic migrations in ``cxbridge/store/migrations`` create exactly these tables (a
test compares them). JSON columns use ``sqlalchemy.JSON`` (JSON on SQLite, JSON on PostgreSQL); timestamps
are timezone-aware UTC. Ids are strings (``cus_<ulid-like>``) so they are stable across backends.

Tables, by concern:

- golden records: ``customers``, ``customer_aliases``, ``organizations``, ``traits``, ``trait_history``,
  ``events``
- identity: ``source_links`` (source record -> golden id), ``identity_keys`` (match keys -> golden id)
- source mirror: ``source_records`` (raw fields, content hash, tombstones), ``interactions``
- sync: ``cursors``, ``sync_runs``, ``quarantine``, ``plugin_failures``, ``source_state``, ``rate_budgets``
- write-back: ``outbox``, ``writeback_state`` (last value known in the CRM per field), ``inbox`` (webhooks)
- privacy: ``erasure_ledger``, ``erasure_pending`` (CRM erasures to try again)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["UTCDateTime", "key_string", "metadata"]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always written and read as timezone-aware UTC, on every backend.

    SQLite has no timezone support (SQLAlchemy stores an ISO string without offset) and MySQL ``DATETIME``
    neither, so values are converted to naive UTC on the way in and tagged UTC on the way out; PostgreSQL
    keeps ``timestamptz``. Naive input is taken to be UTC already. MySQL gets microsecond precision
    (``DATETIME(6)``), which cursors (modstamp, id) need.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


TS = UTCDateTime()


def key_string(length: int, mysql_length: int | None = None) -> TypeEngine[str]:
    """A string that takes part in keys and lookups: compared case-sensitively on every backend.

    MySQL/MariaDB compare case-insensitively by default and limit an InnoDB index to 3072 bytes (768 utf8mb4
    characters), so there these columns are ``utf8mb4_bin`` and, where a composite key would exceed the
    limit, shorter (``mysql_length``). SQLite and PostgreSQL get ``VARCHAR(length)``.
    """
    variant = mysql.VARCHAR(mysql_length or length, charset="utf8mb4", collation="utf8mb4_bin")
    return String(length).with_variant(variant, "mysql", "mariadb")


ID = key_string(64)
NAME = key_string(255, 191)


def _sparse_index(name: str, column: str) -> Index:
    """An index of the rows where ``column`` is set (most customers and links have no organization): rows
    without one cost no index entry. MySQL has no partial indexes and indexes every row."""
    where = text(f"{column} IS NOT NULL")
    return Index(name, column, sqlite_where=where, postgresql_where=where)

# ---------------------------------------------------------------------------------------------- golden records

customers = Table(
    "customers",
    metadata,
    Column("id", ID, primary_key=True),
    Column("data", JSON, nullable=False),  # Customer model dump without traits/links/provenance/aliases
    # golden field -> {source, object_type, source_id, observed_at}
    Column("provenance", JSON, nullable=False, default=dict),
    # display name, primary email and phone are copies for listing and search (LIKE '%...%', which no b-tree
    # index serves); lookups by email or phone go through identity_keys
    Column("display_name", String(512)),
    Column("primary_email", String(320)),
    Column("primary_phone", String(32)),
    Column("organization_id", ID),
    Column("erased", Boolean, nullable=False, default=False),
    Column("processing_opt_out", Boolean, nullable=False, default=False),
    Column("version", Integer, nullable=False, default=1),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    _sparse_index("ix_customers_organization_id", "organization_id"),
)

customer_aliases = Table(
    "customer_aliases",
    metadata,
    Column("alias_id", ID, primary_key=True),
    Column("customer_id", ID, nullable=False, index=True),  # survivor (always resolved to the final survivor)
    Column("reason", String(64), nullable=False),  # crm-merge:<source> | identity:<rule> | manual
    Column("created_at", TS, nullable=False),
)

organizations = Table(
    "organizations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("data", JSON, nullable=False),
    Column("name", String(512)),
    Column("domain", String(255), index=True),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

traits = Table(
    "traits",
    metadata,
    Column("customer_id", ID, primary_key=True),
    Column("name", NAME, primary_key=True),
    Column("value", JSON),
    Column("type", String(16), nullable=False),
    Column("producer", NAME, nullable=False),
    Column("computed_at", TS, nullable=False),
    Index("ix_traits_name", "name"),
)

trait_history = Table(
    "trait_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", ID, nullable=False, index=True),
    Column("name", NAME, nullable=False),
    Column("old_value", JSON),
    Column("new_value", JSON),
    Column("producer", NAME, nullable=False),
    Column("changed_at", TS, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", NAME, nullable=False, index=True),
    Column("customer_id", ID, index=True),
    Column("payload", JSON, nullable=False),
    Column("producer", NAME),
    Column("at", TS, nullable=False),
)

# ---------------------------------------------------------------------------------------------------- identity

source_links = Table(
    "source_links",
    metadata,
    Column("source", NAME, primary_key=True),
    Column("object_type", NAME, primary_key=True),
    Column("source_id", NAME, primary_key=True),
    Column("entity", String(16), nullable=False),  # customer | organization
    Column("customer_id", ID, index=True),
    Column("organization_id", ID),
    Column("rule", String(64)),
    Column("linked_at", TS, nullable=False),
    _sparse_index("ix_source_links_organization_id", "organization_id"),
)

# Match keys of source records: ``email:<e>`` | ``phone:<E.164>`` | ``xid:<name>:<value>``. A key's golden id is
# its record's link (join source_links), so merges and re-links never rewrite keys; the keys of a record are
# derived from its mapped patch (cxbridge.identity.keys), so nothing looks keys up by record or customer.
# On SQLite the primary key is the table (WITHOUT ROWID): one b-tree instead of a table plus two indexes.
identity_keys = Table(
    "identity_keys",
    metadata,
    Column("key", key_string(400, 190), primary_key=True),
    Column("source", NAME, primary_key=True),
    Column("object_type", NAME, primary_key=True),
    Column("source_id", NAME, primary_key=True),
    sqlite_with_rowid=False,
)

# ----------------------------------------------------------------------------------------------- source mirror

source_records = Table(
    "source_records",
    metadata,
    Column("source", NAME, primary_key=True),
    Column("object_type", NAME, primary_key=True),
    Column("source_id", NAME, primary_key=True),
    Column("modstamp", TS),
    Column("content_hash", String(64), nullable=False),
    Column("fields", JSON, nullable=False),
    Column("associations", JSON, nullable=False, default=dict),
    Column("mapped", JSON),  # the canonical patch the mapping produced (custom + unmapped kept)
    Column("deleted", Boolean, nullable=False, default=False),
    Column("merged_into", NAME),
    Column("first_seen", TS, nullable=False),
    Column("last_seen", TS, nullable=False),
    Column("run_id", ID),
)

interactions = Table(
    "interactions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", ID, index=True),
    Column("source", NAME, nullable=False),
    Column("object_type", NAME, nullable=False),
    Column("source_id", NAME, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("type", String(32), nullable=False, index=True),
    Column("occurred_at", TS, nullable=False, index=True),
    Column("direction", String(16), nullable=False),
    Column("amount", Numeric(18, 4)),
    Column("currency", String(3)),
    Column("subject", Text),
    Column("content", Text),
    Column("sentiment", Float),
    Column("data", JSON, nullable=False),  # context + custom
    Column("deleted", Boolean, nullable=False, default=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("source", "object_type", "source_id", name="uq_interactions_source_key"),
    Index("ix_interactions_customer_time", "customer_id", "occurred_at"),
)

# -------------------------------------------------------------------------------------------------------- sync

cursors = Table(
    "cursors",
    metadata,
    Column("source", NAME, primary_key=True),
    Column("stream", NAME, primary_key=True),
    Column("cursor", JSON, nullable=False),  # Cursor.to_json()
    Column("run_id", ID),
    Column("updated_at", TS, nullable=False),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("source", NAME, nullable=False),
    Column("stream", NAME, nullable=False),
    Column("status", String(16), nullable=False),  # running | succeeded | failed | stopped
    Column("full", Boolean, nullable=False, default=False),
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS),
    Column("heartbeat_at", TS),
    Column("records_read", Integer, nullable=False, default=0),
    Column("records_changed", Integer, nullable=False, default=0),
    Column("records_quarantined", Integer, nullable=False, default=0),
    Column("pages", Integer, nullable=False, default=0),
    Column("api_calls", Integer, nullable=False, default=0),
    Column("cursor_before", JSON),
    Column("cursor_after", JSON),
    Column("error", Text),
    Index("ix_sync_runs_source_stream_started", "source", "stream", "started_at"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", NAME, nullable=False),
    Column("stream", NAME, nullable=False),
    Column("object_type", NAME),
    Column("source_id", NAME),
    Column("reason", Text, nullable=False),
    Column("raw", JSON, nullable=False),
    Column("status", String(16), nullable=False, default="open"),  # open | replayed | discarded
    Column("run_id", ID),
    Column("created_at", TS, nullable=False),
    Column("resolved_at", TS),
    Index("ix_quarantine_status", "status"),
)

plugin_failures = Table(
    "plugin_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plugin", NAME, nullable=False),
    Column("distribution", NAME),
    Column("hook", NAME, nullable=False),
    Column("error", Text, nullable=False),
    Column("batch_size", Integer),
    Column("run_id", ID),
    Column("at", TS, nullable=False),
)

source_state = Table(
    "source_state",
    metadata,
    Column("source", NAME, primary_key=True),
    Column("key", NAME, primary_key=True),
    Column("value", JSON),
    Column("updated_at", TS, nullable=False),
)

rate_budgets = Table(
    "rate_budgets",
    metadata,
    Column("key", NAME, primary_key=True),
    Column("window_start", Float, nullable=False),  # epoch seconds
    Column("used", Integer, nullable=False, default=0),
)

# -------------------------------------------------------------------------------------------------- write-back

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("source", NAME, nullable=False),
    Column("object_type", NAME, nullable=False),
    Column("action", String(16), nullable=False),  # update | upsert | create
    Column("source_id", NAME),
    Column("id_property", NAME),
    Column("id_value", NAME),
    Column("customer_id", ID, index=True),
    Column("fields", JSON, nullable=False),
    Column("associations", JSON, nullable=False, default=dict),
    Column("rule", NAME),  # write-back rule / action producer
    Column("basis_modstamp", TS),  # CRM modstamp of the record the value was computed against
    Column("status", String(16), nullable=False, default="pending"),  # pending | sent | dead | skipped
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", TS, nullable=False),
    Column("last_error", Text),
    Column("result_id", NAME),
    Column("created_at", TS, nullable=False),
    Column("sent_at", TS),
    Index("ix_outbox_status_next", "status", "next_attempt_at"),
    Index("ix_outbox_source_status", "source", "status"),
)

writeback_state = Table(
    "writeback_state",
    metadata,
    Column("source", NAME, primary_key=True),
    Column("object_type", NAME, primary_key=True),
    Column("source_id", NAME, primary_key=True),
    Column("field", NAME, primary_key=True),
    Column("value", JSON),  # the value we last wrote (or last saw)
    Column("written_at", TS, nullable=False),
    Column("by_us", Boolean, nullable=False, default=True),
)

inbox = Table(
    "inbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", NAME, nullable=False),
    Column("event_id", NAME, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False, default="new"),  # new | processed | failed | erased
    Column("received_at", TS, nullable=False),
    Column("processed_at", TS),
    Column("error", Text),
    UniqueConstraint("source", "event_id", name="uq_inbox_source_event"),
)

# ----------------------------------------------------------------------------------------------------- privacy

erasure_ledger = Table(
    "erasure_ledger",
    metadata,
    Column("hash", String(128), primary_key=True),  # sha256 of a salted normalized identifier
    Column("kind", String(16), nullable=False),  # email | phone | source_id
    Column("customer_id", ID),
    Column("requested_at", TS, nullable=False),
    Column("sources_status", JSON, nullable=False, default=dict),
)

# A CRM that could not erase a forgotten person's record (an outage, a rate limit, a record it refused) keeps
# the record's key here until ``cxbridge erasures retry`` succeeds: the store itself no longer knows which CRM
# records belonged to the person. Only CRM record ids are kept -- no name, email or phone -- and each row goes
# once the CRM confirms the erasure.
erasure_pending = Table(
    "erasure_pending",
    metadata,
    Column("source", NAME, primary_key=True),
    Column("object_type", NAME, primary_key=True),
    Column("source_id", NAME, primary_key=True),
    Column("customer_id", ID, nullable=False),  # the erased golden id (the ledger's customer_id)
    Column("requested_at", TS, nullable=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("last_attempt_at", TS, nullable=False),
    Column("last_error", Text, nullable=False),
)
