"""The public adapter API: what an adapter (first- or third-party) implements and what it is given.

An adapter connects one kind of CRM. A plugin registers it with the ``register_adapters`` hook, returning an
:class:`AdapterInfo`; the config names it per source (``[sources.shop] adapter = "local-sql"``) and the
adapter's own pydantic config model validates the rest of that table. The framework builds one adapter
instance per configured source with :attr:`AdapterInfo.factory` and an :class:`AdapterContext`.

Reading
    :meth:`Adapter.read` yields :class:`Page` objects for one stream, starting at a :class:`Cursor`. Records in
    a page are raw :class:`~cxbridge.models.SourceRecord` objects; the page carries the cursor *after* it.
    The sync engine commits each page's records together with that cursor in one transaction, so a crash
    resumes from the last committed page. For modstamp-ordered reads the cursor is the ``(modstamp, id)`` of
    the last record in the page, read inclusively next time (``modstamp > m OR (modstamp = m AND id > id)``);
    the engine applies the look-back window, clamps the cursor to the run's start minus a safety margin and
    never lets it move backwards. Adapters that page by other means (an initial load through a list endpoint,
    files in a folder) keep their position in :attr:`Cursor.state`, which the engine stores opaquely.

Writing
    :meth:`Adapter.write` receives at most :attr:`Adapter.write_batch_size` :class:`WriteOp` objects and
    returns one :class:`WriteResult` per op (a partial failure fails only its own ops).

Every method may raise :class:`~cxbridge.errors.AdapterError` subclasses; adapters never log credentials.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    # Annotations only, so plugin modules importing AdapterInfo stay cheap to import (``cxbridge --help``).
    import httpx
    from pydantic import BaseModel

    from .models import SourceRecord

__all__ = [
    "Adapter",
    "AdapterContext",
    "AdapterInfo",
    "CheckResult",
    "Cursor",
    "Entity",
    "FieldInfo",
    "MappingSpec",
    "Page",
    "RateBudget",
    "RecordRef",
    "StateStore",
    "StreamInfo",
    "WriteOp",
    "WriteResult",
]

Entity = Literal["customer", "organization", "interaction", "other"]

#: A declarative field map: canonical field path -> source field expression.
#:
#: - ``"email"``: the source field ``email`` (a dotted path reads nested dicts: ``"properties.email"``);
#: - ``["phone", "mobilephone"]``: several source fields; list-valued canonical fields (``emails``, ``phones``)
#:   take every non-empty value, scalar ones take the first non-empty value;
#: - ``"=purchase"``: a constant.
#:
#: Canonical paths are Customer / Organization / Interaction fields (``first_name``, ``emails``,
#: ``demographics.country``, ``consent.email_opt_out``, ``external_ids.erp_no``, ``custom.loyalty``,
#: ``addresses.0.city``) plus, for interactions, ``customer_ref`` (the source id of the customer record in
#: the same source) and, for customers, ``organization_ref``.
MappingSpec = Mapping[str, "str | list[str]"]


@dataclass(frozen=True)
class Cursor:
    """A position in a stream.

    :param modstamp: modification time of the last record committed (UTC), or None.
    :param last_id: source id of that record, for tie-breaking between records sharing ``modstamp``.
    :param state: adapter-private JSON-serializable state (list-endpoint ``after`` tokens, processed files).
    """

    modstamp: datetime | None = None
    last_id: str | None = None
    state: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "modstamp": self.modstamp.isoformat() if self.modstamp else None,
            "last_id": self.last_id,
            "state": dict(self.state),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Cursor:
        if not data:
            return cls()
        stamp = data.get("modstamp")
        modstamp = datetime.fromisoformat(stamp) if stamp else None
        if modstamp is not None and modstamp.tzinfo is None:
            modstamp = modstamp.replace(tzinfo=UTC)
        return cls(modstamp=modstamp, last_id=data.get("last_id"), state=dict(data.get("state") or {}))


@dataclass
class Page:
    """One page of records and the cursor that follows it.

    :param records: the records, in the stream's order.
    :param cursor: the position after this page; committed with the records in one transaction.
    :param api_calls: how many API calls reading this page cost (for metrics and benchmarks).
    """

    records: list[SourceRecord]
    cursor: Cursor
    api_calls: int = 1


@dataclass(frozen=True)
class StreamInfo:
    """A stream an adapter offers: one object type of the CRM.

    :param name: stream name, unique within the adapter (``contacts``).
    :param object_type: the ``object_type`` of the records it yields.
    :param entity: what the records become in the canonical model.
    :param default_mapping: field map used when the config gives none (the config may extend it).
    :param customer_object: for interactions: the object type whose source ids ``customer_ref`` names.
    :param incremental: whether reads resume from a cursor (else every run is a full read).
    :param supports_deletes: whether the stream reports deletions (else the engine reconciles ids).
    """

    name: str
    object_type: str
    entity: Entity
    default_mapping: MappingSpec = field(default_factory=dict)
    customer_object: str | None = None
    incremental: bool = True
    supports_deletes: bool = True


@dataclass(frozen=True)
class FieldInfo:
    """A field a CRM object has (from describe / properties APIs), for mapping without code."""

    name: str
    label: str | None = None
    type: str = "string"
    custom: bool = False
    writable: bool = True
    unique: bool = False


@dataclass(frozen=True)
class RecordRef:
    """A reference to one record in a source."""

    object_type: str
    source_id: str


@dataclass(frozen=True)
class WriteOp:
    """One intended write, produced by the outbox.

    :param key: idempotency key; the result of the op carries it back.
    :param object_type: CRM object type.
    :param action: ``update`` by ``source_id``; ``upsert`` by the unique ``id_property`` = ``id_value``;
        ``create`` a new record (tasks and notes for closed-loop actions).
    :param fields: CRM field name -> value.
    :param associations: for ``create``: object type -> source ids to associate the new record with.
    """

    key: str
    object_type: str
    action: Literal["update", "upsert", "create"]
    fields: Mapping[str, Any]
    source_id: str | None = None
    id_property: str | None = None
    id_value: str | None = None
    associations: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteResult:
    """The outcome of one :class:`WriteOp`.

    :param retryable: for failures: whether trying again later may succeed (429, 5xx, lock) or not
        (validation error, missing field) -- the latter is dead-lettered at once.
    """

    key: str
    ok: bool
    source_id: str | None = None
    error: str | None = None
    retryable: bool = False


@dataclass(frozen=True)
class CheckResult:
    """One line of ``cxbridge doctor`` for a source."""

    name: str
    ok: bool
    detail: str = ""


class StateStore(Protocol):
    """Small persistent key/value state per source (OAuth tokens that rotate, quota reset times)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class RateBudget(Protocol):
    """A request budget shared by every stream (and every worker) of one CRM account."""

    def acquire(self, cost: int = 1) -> None:
        """Block until ``cost`` requests may be sent."""
        ...


@dataclass
class AdapterContext:
    """What the framework gives an adapter instance.

    :param source: the configured source name.
    :param http: builds an httpx client with the framework's retry, pacing and redacting log policy; see
        :func:`cxbridge.http.build_client` for its keyword arguments.
    :param state: persistent per-source key/value state.
    :param budget_factory: ``(key, limit, period_seconds) -> RateBudget`` shared across streams and workers.
    :param sleep: sleeps (the test kit replaces it so tests never wait).
    :param now: the current time (UTC); tests may freeze it.
    :param secrets: secret values to redact from any error or log line.
    """

    source: str
    http: Callable[..., httpx.Client]
    state: StateStore
    budget_factory: Callable[[str, int, float], RateBudget]
    sleep: Callable[[float], None]
    now: Callable[[], datetime]
    secrets: Sequence[str] = ()


class Adapter(abc.ABC):
    """Base class of adapters. Subclasses implement :meth:`streams`, :meth:`read` and usually :meth:`write`."""

    #: Maximum ops per :meth:`write` call (vendor batch size).
    write_batch_size: int = 100
    #: What the adapter supports beyond reading: ``write``, ``erase``, ``read_ids``, ``list_ids``, ``describe``.
    capabilities: frozenset[str] = frozenset()

    def __init__(self, config: BaseModel, context: AdapterContext) -> None:
        self.config = config
        self.context = context

    @abc.abstractmethod
    def streams(self) -> list[StreamInfo]:
        """The streams this source offers, in sync order (customers and organizations before interactions)."""

    @abc.abstractmethod
    def read(self, stream: str, cursor: Cursor, *, full: bool = False) -> Iterator[Page]:
        """Yield pages of ``stream`` after ``cursor`` (inclusive of its modstamp; see the module docs).

        :param full: read everything, ignoring the cursor (a full refresh / reconciliation run).
        """

    def read_ids(self, stream: str, ids: Sequence[str]) -> Iterator[Page]:
        """Yield pages with the current state of the given records (targeted re-reads after webhooks).

        Records that no longer exist come back as tombstones (``deleted=True``), merged ones with
        ``merged_into`` set.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support targeted reads")

    def list_ids(self, stream: str) -> Iterator[str]:
        """Yield every live id of ``stream`` (for delete reconciliation where the CRM reports no deletes)."""
        raise NotImplementedError(f"{type(self).__name__} does not support id listing")

    def describe(self, stream: str) -> list[FieldInfo]:
        """The fields of the stream's object type, custom fields included."""
        raise NotImplementedError(f"{type(self).__name__} does not describe fields")

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Apply ``ops`` (at most :attr:`write_batch_size`); one result per op, in any order."""
        raise NotImplementedError(f"{type(self).__name__} is read-only")

    def erase(self, refs: Sequence[RecordRef]) -> list[WriteResult]:
        """Erase (GDPR) the given records in the CRM; one result per ref, keyed by ``object_type:source_id``."""
        raise NotImplementedError(f"{type(self).__name__} does not support erasure")

    def check(self, required_fields: Mapping[str, Iterable[str]]) -> list[CheckResult]:
        """Test the connection and that ``required_fields`` (object type -> field names) exist and are writable.

        Used by ``cxbridge doctor``. The default only reports that no check is implemented.
        """
        return [CheckResult("connection", True, "no connection check implemented")]

    def close(self) -> None:  # noqa: B027 -- optional hook: adapters without connections need not override it
        """Release connections."""


@dataclass(frozen=True)
class AdapterInfo:
    """What ``register_adapters`` returns for each adapter.

    :param name: the name sources use in ``adapter = "..."`` (lowercase, dashes).
    :param config_model: the pydantic model validating the source's table (use ``extra="forbid"``).
    :param factory: ``(config, context) -> Adapter``.
    :param description: one line for ``cxbridge plugins list`` and docs.
    """

    name: str
    config_model: type[BaseModel]
    factory: Callable[[Any, AdapterContext], Adapter]
    description: str = ""
