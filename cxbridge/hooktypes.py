"""Types passed to and returned by hooks (see :mod:`cxbridge.hookspecs`).

Registration hooks return frozen records (:class:`CommandInfo`, :class:`RouteInfo`, ...; adapters use
:class:`cxbridge.adapters.AdapterInfo`). Lifecycle hooks receive a :class:`PluginContext`, the plugin's only
door to the store: read customers and interactions, set traits, emit actions and events. Plugins never see
CRM credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    # Annotations only: importing pydantic and the models here would make every plugin module (and so
    # ``cxbridge --help``) pay for them at import time.
    import typer
    from pydantic import BaseModel

    from .models import Customer, Interaction, SourceRecord, TraitType

__all__ = [
    "Action",
    "CommandInfo",
    "IdentityCandidate",
    "IdentityDecision",
    "IdentityMatch",
    "JobInfo",
    "PluginContext",
    "RouteInfo",
    "SettingsInfo",
    "SyncRunInfo",
    "TraitInfo",
]


# --------------------------------------------------------------------------------------------------------------
# Registration records
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandInfo:
    """A CLI sub-command group: ``cxbridge <name> ...``.

    :param name: the sub-command name (``segments``).
    :param app: a ``typer.Typer`` holding the commands; built lazily by the plugin is fine.
    :param help: one line for ``cxbridge --help``.
    """

    name: str
    app: typer.Typer
    help: str = ""


@dataclass(frozen=True)
class RouteInfo:
    """A route mounted by the web app (webhook receivers, survey pages).

    :param path: URL path, e.g. ``/webhooks/hubspot/{source}``.
    :param endpoint: a Starlette endpoint ``async (request) -> response``.
    :param methods: HTTP methods.
    :param name: unique route name.
    :param auth: whether the dashboard's authentication applies (webhooks verify signatures instead).
    """

    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...] = ("GET",)
    name: str = ""
    auth: bool = False


@dataclass(frozen=True)
class SettingsInfo:
    """A plugin's settings table: ``[plugins.<namespace>]`` in ``cxbridge.toml``, validated by ``model``."""

    namespace: str
    model: type[BaseModel]


@dataclass(frozen=True)
class TraitInfo:
    """A trait a plugin produces, so write-back rules and ``doctor`` can check names and types."""

    name: str
    type: TraitType = "string"
    description: str = ""


@dataclass(frozen=True)
class JobInfo:
    """A periodic job (model refits, survey sends) run by the daemon / workers.

    :param name: unique job name (``segments.refit``).
    :param func: ``(context) -> None``.
    :param every_seconds: interval.
    """

    name: str
    func: Callable[[PluginContext], None]
    every_seconds: float
    description: str = ""


# --------------------------------------------------------------------------------------------------------------
# Sync lifecycle values
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncRunInfo:
    """One sync run of one stream.

    :param status: ``running``, ``succeeded``, ``failed``, ``stopped`` (quota / SIGTERM: resumes next time).
    """

    id: str
    source: str
    stream: str
    started_at: datetime
    finished_at: datetime | None = None
    status: Literal["running", "succeeded", "failed", "stopped"] = "running"
    records_read: int = 0
    records_changed: int = 0
    records_quarantined: int = 0
    pages: int = 0
    api_calls: int = 0
    error: str | None = None


@dataclass(frozen=True)
class IdentityMatch:
    """An existing golden customer that shares a key with the candidate.

    :param keys: the shared keys, e.g. ``("email:ann@example.com", "xid:erp_no:4711")``.
    """

    customer_id: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class IdentityCandidate:
    """A customer-entity source record about to be linked to a golden customer.

    :param keys: its match keys (``email:<normalized>``, ``phone:<E.164>``, ``xid:<name>:<value>``).
    :param current_customer_id: the golden id it is linked to already, if any.
    """

    record: SourceRecord
    keys: tuple[str, ...]
    patch: Mapping[str, Any]
    current_customer_id: str | None = None


@dataclass(frozen=True)
class IdentityDecision:
    """What to do with a candidate.

    :param action: ``link`` to ``customer_id``; ``new`` golden customer; ``merge`` the ``merge_ids`` into
        ``customer_id`` (which survives; the others become aliases).
    """

    action: Literal["link", "new", "merge"]
    customer_id: str | None = None
    merge_ids: tuple[str, ...] = ()
    rule: str = "plugin"


@dataclass(frozen=True)
class Action:
    """A closed-loop action a plugin asks for: a task or note in the CRM, on the customer's linked records.

    :param kind: ``task`` or ``note``.
    :param key: idempotency key (the same key never creates twice).
    :param sources: restrict to these sources (default: every linked source whose adapter can write).
    :param channel: consent channel the action uses; the framework drops it if the customer opted out.
    """

    kind: Literal["task", "note"]
    customer_id: str
    key: str
    subject: str
    body: str = ""
    due_at: datetime | None = None
    priority: Literal["low", "normal", "high"] = "normal"
    sources: tuple[str, ...] = ()
    channel: str = "processing"
    producer: str = ""


class PluginContext(Protocol):
    """The plugin's view of the store during a hook call (implemented by the sync engine and the test kit).

    Reads are batched; writes (traits, actions, events) are committed with the engine's transaction.
    """

    run_id: str | None
    now: datetime

    def settings(self, namespace: str) -> Any:
        """The validated settings model of ``[plugins.<namespace>]`` (or its defaults)."""
        ...

    def get_customers(self, ids: Sequence[str]) -> list[Customer]:
        """Golden customers by id (aliases resolve to the survivor; unknown and erased ids are skipped)."""
        ...

    def iter_customers(self, batch_size: int = 1000) -> Iterator[list[Customer]]:
        """Every live golden customer, in batches."""
        ...

    def get_interactions(
        self, customer_ids: Sequence[str], types: Sequence[str] | None = None
    ) -> dict[str, list[Interaction]]:
        """Interactions of each customer, oldest first, optionally of the given types only."""
        ...

    def iter_interaction_rows(
        self,
        types: Sequence[str] | None = None,
        *,
        batch_size: int = 10_000,
        include_processing_opt_out: bool = False,
    ) -> Iterator[list[tuple[str, datetime, float | None, str | None, str]]]:
        """Stream interactions of all live customers as plain tuples, for bulk analytics (model fits).

        Each row is ``(customer_id, occurred_at, amount, currency, type)`` (``occurred_at`` aware UTC,
        ``amount`` a float or None, ``type`` a plain string). Rows are ordered by customer and a batch of about
        ``batch_size`` rows never splits a customer. Keyset-paged: memory stays flat however large the store.
        Deleted interactions, erased customers and (unless ``include_processing_opt_out``) customers who object
        to profiling are skipped. Example::

            spend = collections.Counter()
            for rows in context.iter_interaction_rows(["purchase"]):
                for customer_id, occurred_at, amount, currency, kind in rows:
                    spend[customer_id] += amount or 0.0
        """
        ...

    def count_customers(self, interaction_types: Sequence[str] | None = None) -> int:
        """Live customers; with ``interaction_types``, those with at least one such interaction (one aggregate
        query, e.g. ``context.count_customers(["purchase"])`` for the number of purchasers)."""
        ...

    def get_state(self, key: str) -> Any:
        """A plugin's persisted JSON state under ``"<namespace>.<name>"`` (None if never set).

        Shared by every process using the same store. Example: ``context.get_state("segments.model")``.
        """
        ...

    def set_state(self, key: str, value: Any) -> None:
        """Persist small JSON-serialisable plugin state under ``"<namespace>.<name>"`` (None deletes it).

        Committed immediately in its own transaction (not with the batch's traits), last writer wins. Example:
        ``context.set_state("segments.model", {"fitted_at": "2024-05-01T00:00:00+00:00", "edges": [...]})``.
        """
        ...

    def set_traits(self, customer_id: str, values: Mapping[str, Any], *, producer: str) -> None:
        """Set traits (``{"segments.tier": "gold"}``); unchanged values are not rewritten or written back."""
        ...

    def emit_action(self, action: Action) -> None:
        """Queue a closed-loop action (consent is checked by the framework)."""
        ...

    def emit_event(self, name: str, customer_id: str, payload: Mapping[str, Any]) -> None:
        """Record an event (``segments.entered``) other plugins receive through ``events_emitted``."""
        ...


