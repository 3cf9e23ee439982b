"""Hook specifications: the whole plugin API of cxbridge, grouped by phase.

A plugin is a module or object with functions decorated by ``cxbridge.hookimpl``, registered through the
``cxbridge`` entry-point group::

    [project.entry-points.cxbridge]
    myplugin = "my_package.plugin"

Implementations may accept any subset of a hook's arguments (new arguments are only ever added). Hooks are
cheap and synchronous: I/O belongs in adapters; heavy imports belong inside the hook body.

A plugin that raises inside a hook is isolated: the failure is recorded (plugin, hook, error) and shown by
``cxbridge status``; the sync and the other plugins go on. Registration hooks are the exception: a broken
registration fails at start with a message naming the distribution.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .adapters import AdapterInfo, WriteOp, WriteResult
    from .hooktypes import (
        CommandInfo,
        IdentityCandidate,
        IdentityDecision,
        IdentityMatch,
        JobInfo,
        PluginContext,
        RouteInfo,
        SettingsInfo,
        SyncRunInfo,
        TraitInfo,
    )
    from .models import Interaction, SourceRecord

PROJECT_NAME = "cxbridge"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]


# --------------------------------------------------------------------------------------------------------------
# Registration hooks: called once when the plugin manager is built; results are collected, validated and
# de-duplicated by name (a duplicate names both distributions).
# --------------------------------------------------------------------------------------------------------------


@hookspec
def register_adapters() -> Iterable[AdapterInfo]:
    """Register CRM adapters.

    Called once at start; every implementation's results are collected. Adapter names must be unique across
    all plugins; a duplicate fails naming both distributions.

    Example::

        from cxbridge import hookimpl
        from cxbridge.adapters import AdapterInfo

        @hookimpl
        def register_adapters():
            return [AdapterInfo(name="mycrm", config_model=MyCrmConfig, factory=MyCrmAdapter,
                                description="MyCRM REST API")]
    """


@hookspec
def register_commands() -> Iterable[CommandInfo]:
    """Register CLI sub-command groups (``cxbridge <name> ...``).

    Called once when the CLI starts; every implementation's results are collected. Names must not clash
    with built-in commands or each other. Import heavy libraries inside the commands, not at module level,
    so ``cxbridge --help`` stays fast.

    Example::

        import typer
        from cxbridge.hooktypes import CommandInfo

        app = typer.Typer()

        @app.command()
        def report():
            ...

        @hookimpl
        def register_commands():
            return [CommandInfo(name="segments", app=app, help="Customer segments")]
    """


@hookspec
def register_routes() -> Iterable[RouteInfo]:
    """Register web routes (webhook receivers, survey pages) mounted by ``cxbridge daemon``.

    Called once when the web app is built; every implementation's results are collected.

    Example::

        from starlette.responses import JSONResponse
        from cxbridge.hooktypes import RouteInfo

        async def ping(request):
            return JSONResponse({"ok": True})

        @hookimpl
        def register_routes():
            return [RouteInfo(path="/myplugin/ping", endpoint=ping, name="myplugin-ping")]
    """


@hookspec
def register_settings() -> Iterable[SettingsInfo]:
    """Register the settings model of a plugin's ``[plugins.<namespace>]`` table.

    Called once when the config is loaded; the table is validated with the model (use ``extra="forbid"`` so
    a typo is an error naming the key). A table without a registered model is an error.

    Example::

        from pydantic import BaseModel, ConfigDict
        from cxbridge.hooktypes import SettingsInfo

        class Settings(BaseModel):
            model_config = ConfigDict(extra="forbid")
            horizon_days: int = 365

        @hookimpl
        def register_settings():
            return [SettingsInfo(namespace="segments", model=Settings)]
    """


@hookspec
def register_traits() -> Iterable[TraitInfo]:
    """Declare the traits a plugin produces, so write-back rules can be checked before they run.

    Called once when the config is validated; every implementation's results are collected.

    Example::

        from cxbridge.hooktypes import TraitInfo

        @hookimpl
        def register_traits():
            return [TraitInfo(name="segments.tier", type="string", description="Value tier")]
    """


@hookspec
def register_jobs() -> Iterable[JobInfo]:
    """Register periodic jobs (model refits, scheduled survey sends).

    Called once when the scheduler starts; every implementation's results are collected. Each job runs with
    a :class:`~cxbridge.hooktypes.PluginContext`; one job name runs on one worker at a time.

    Example::

        from cxbridge.hooktypes import JobInfo

        def refit(context):
            ...

        @hookimpl
        def register_jobs():
            return [JobInfo(name="segments.refit", func=refit, every_seconds=86400)]
    """


# --------------------------------------------------------------------------------------------------------------
# Configuration hooks
# --------------------------------------------------------------------------------------------------------------


@hookspec
def config_loaded(config: Any, settings: Mapping[str, Any]) -> None:
    """Notify plugins that the configuration was loaded and validated.

    Called once per process after validation, for every plugin. Raise
    :class:`~cxbridge.errors.ConfigError` (with ``key=``) to reject a combination of settings that the
    model alone cannot check.

    :param config: the validated :class:`cxbridge.config.Config` (secrets are ``SecretStr``; never log them).
    :param settings: namespace -> validated plugin settings model.

    Example::

        from cxbridge.errors import ConfigError

        @hookimpl
        def config_loaded(config, settings):
            if settings["segments"].tiers and len(settings["segments"].tiers) > 4:
                raise ConfigError("at most 4 tiers", key="plugins.segments.tiers")
    """


# --------------------------------------------------------------------------------------------------------------
# Sync lifecycle hooks: called with batches (one page or one commit), never one record per call.
# --------------------------------------------------------------------------------------------------------------


@hookspec
def sync_started(run: SyncRunInfo) -> None:
    """Notify plugins that a stream's sync run started.

    Called for every plugin, once per (source, stream) run, before the first page is read.

    :param run: the run (id, source, stream, start time).

    Example::

        @hookimpl
        def sync_started(run):
            logger.info("sync of %s/%s started", run.source, run.stream)
    """


@hookspec
def prepare_records(source: str, stream: str, records: list[SourceRecord]) -> None:
    """Transform a page of raw records before mapping (clean values, enrich, drop test data).

    Called for every plugin, once per page, in plugin order; implementations change ``records`` in place:
    edit ``record.fields``, or remove records from the list to skip them (they are not stored). A record
    that raises :class:`~cxbridge.errors.RecordError` is quarantined with the message instead.

    :param source: configured source name.
    :param stream: stream name.
    :param records: the page, mutable.

    Example::

        @hookimpl
        def prepare_records(source, stream, records):
            records[:] = [r for r in records if not r.fields.get("email", "").endswith("@test.invalid")]
            for r in records:
                if r.fields.get("country") == "UK":
                    r.fields["country"] = "GB"
    """


@hookspec(firstresult=True)
def resolve_identity(candidate: IdentityCandidate, matches: Sequence[IdentityMatch]) -> IdentityDecision | None:
    """Decide which golden customer a source record belongs to.

    Stops at the first non-None result; the built-in deterministic resolver (email, E.164 phone, configured
    cross-system ids) is registered with ``trylast=True``, so any plugin implementation overrides it.

    :param candidate: the record with its match keys and mapped patch.
    :param matches: existing golden customers sharing at least one key, best first.

    Example::

        from cxbridge.hooktypes import IdentityDecision

        @hookimpl
        def resolve_identity(candidate, matches):
            # never link on shared role mailboxes
            if any(k.startswith("email:info@") for k in candidate.keys):
                return IdentityDecision(action="new", rule="no-role-mailboxes")
            return None
    """


@hookspec
def customers_changed(context: PluginContext, customer_ids: Sequence[str]) -> None:
    """Recompute knowledge for golden customers that changed (new links, new field values, new interactions).

    Called for every plugin after each committed batch, with the ids of every customer whose golden record
    or interactions changed in it. Set traits with ``context.set_traits``; traits that change are written
    back through the configured rules.

    :param context: store access for plugins.
    :param customer_ids: changed customers (surviving ids after merges).

    Example::

        @hookimpl
        def customers_changed(context, customer_ids):
            for customer in context.get_customers(customer_ids):
                context.set_traits(customer.id, {"example.has_phone": bool(customer.phones)},
                                   producer="example")
    """


@hookspec
def interactions_recorded(context: PluginContext, interactions: Sequence[Interaction]) -> None:
    """Receive new or changed interactions (purchases, calls, survey responses, mentions).

    Called for every plugin after each committed batch of interactions, before ``customers_changed`` for the
    same batch.

    :param context: store access for plugins.
    :param interactions: the interactions, with ``customer_id`` resolved where possible.

    Example::

        @hookimpl
        def interactions_recorded(context, interactions):
            for i in interactions:
                if i.type == "survey_response" and (i.custom.get("score") or 10) <= 6:
                    context.emit_action(Action(kind="task", customer_id=i.customer_id, key=f"detractor:{i.id}",
                                               subject="Call back detractor", producer="nps"))
    """


@hookspec
def customers_merged(context: PluginContext, survivor_id: str, merged_ids: Sequence[str]) -> None:
    """Notify plugins that golden customers were merged (in a CRM or by identity resolution).

    Called for every plugin once per merge. ``merged_ids`` are aliases of ``survivor_id`` from now on.

    :param context: store access for plugins.
    :param survivor_id: the golden id that stays.
    :param merged_ids: the golden ids merged into it.

    Example::

        @hookimpl
        def customers_merged(context, survivor_id, merged_ids):
            logger.info("%s absorbed %s", survivor_id, merged_ids)
    """


@hookspec
def events_emitted(context: PluginContext, events: Sequence[Mapping[str, Any]]) -> None:
    """Receive events other plugins emitted (``segments.entered``, ``nps.detractor``...).

    Called for every plugin after each batch in which events were emitted. Each event is a mapping with
    ``name``, ``customer_id``, ``payload`` and ``at``.

    :param context: store access for plugins.
    :param events: the events of the batch.

    Example::

        @hookimpl
        def events_emitted(context, events):
            for e in events:
                if e["name"] == "segments.entered" and e["payload"]["segment"] == "at_risk":
                    ...
    """


@hookspec
def records_quarantined(source: str, stream: str, items: Sequence[Mapping[str, Any]]) -> None:
    """Notify plugins that records were quarantined (to alert someone).

    Called for every plugin once per page that had quarantined records.

    :param source: configured source name.
    :param stream: stream name.
    :param items: mappings with ``source_id``, ``reason`` and ``raw``.

    Example::

        @hookimpl
        def records_quarantined(source, stream, items):
            alerts.send(f"{len(items)} bad records in {source}/{stream}")
    """


@hookspec
def sync_finished(run: SyncRunInfo) -> None:
    """Notify plugins that a stream's sync run ended (succeeded, failed or stopped).

    Called for every plugin, once per run.

    :param run: the run with its final counts and status.

    Example::

        @hookimpl
        def sync_finished(run):
            metrics.gauge("records_read", run.records_read, tags={"source": run.source})
    """


# --------------------------------------------------------------------------------------------------------------
# Write-back hooks
# --------------------------------------------------------------------------------------------------------------


@hookspec
def prepare_writes(source: str, ops: list[WriteOp]) -> None:
    """Inspect or filter a batch of writes before it is sent to a CRM.

    Called for every plugin once per batch, in place: remove ops from the list to hold them back (they stay
    pending in the outbox, marked skipped by this hook).

    :param source: configured source name.
    :param ops: the batch, mutable.

    Example::

        @hookimpl
        def prepare_writes(source, ops):
            if source == "salesforce-prod" and is_freeze_window():
                ops.clear()
    """


@hookspec
def writes_completed(source: str, results: Sequence[WriteResult]) -> None:
    """Receive the results of a batch of writes.

    Called for every plugin once per batch after the outbox recorded the results.

    :param source: configured source name.
    :param results: one result per op (``ok``, ``error``, ``source_id``).

    Example::

        @hookimpl
        def writes_completed(source, results):
            failed = [r for r in results if not r.ok]
            if failed:
                logger.warning("%d writes to %s failed", len(failed), source)
    """


@hookspec
def customer_erased(customer_id: str, email_hashes: Sequence[str]) -> None:
    """Notify plugins that a customer was erased, so they drop anything they keep outside the store.

    Called for every plugin once per erasure, after the store removed the person.

    :param customer_id: the erased golden id.
    :param email_hashes: the ledger hashes of the person's emails.

    Example::

        @hookimpl
        def customer_erased(customer_id, email_hashes):
            my_cache.pop(customer_id, None)
    """
