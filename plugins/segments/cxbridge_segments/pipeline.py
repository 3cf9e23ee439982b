"""The segments pipeline on top of a :class:`~cxbridge.hooktypes.PluginContext`.

- :func:`rescore` -- the incremental path (``customers_changed``): fetch the changed customers and their
  interactions, score them against the cached fitted state, set traits, evaluate rule segments, emit
  entry/exit events.
- :func:`refit` -- the scheduled path (``segments.refit`` job, ``cxbridge segments refit``): read every
  customer's purchases, refit quintiles / CLV / tier boundaries, then re-score everyone in batches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from cxbridge.hooktypes import PluginContext
from cxbridge.models import Customer, Interaction

from .engine import ModelState, Scores, fit_model, score
from .features import PurchaseTable, compute_features, day_number, table_from_interactions
from .money import FxTable
from .rules import Env, RuleEvaluationError
from .settings import SegmentsSettings
from .state import get_state, put_state
from .traits import PRODUCER, batch_traits, cleared_traits, rule_trait

__all__ = ["RescoreStats", "as_of", "ensure_state", "flush", "refit", "rescore", "settings_of"]

logger = logging.getLogger(__name__)

NAMESPACE = "segments"
_MONETARY = ("purchase", "refund")


def settings_of(context: PluginContext) -> SegmentsSettings:
    """The plugin's settings from the context (defaults when the table is absent)."""
    try:
        value = context.settings(NAMESPACE)
    except KeyError:
        value = None
    if isinstance(value, SegmentsSettings):
        return value
    if value is None:
        return SegmentsSettings()
    if isinstance(value, Mapping):
        return SegmentsSettings.model_validate(value)
    return SegmentsSettings.model_validate(value.model_dump() if hasattr(value, "model_dump") else value)


def as_of(context: PluginContext, settings: SegmentsSettings) -> date:
    """The scoring date: ``settings.as_of`` or the context's clock."""
    value = settings.as_of if settings.as_of is not None else context.now
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).date()
    return value


def _fx(settings: SegmentsSettings) -> FxTable:
    return FxTable(settings.reporting_currency, settings.fx_rates, settings.default_currency)


@dataclass
class RescoreStats:
    """What one :func:`rescore` / :func:`refit` call did."""

    customers: int = 0
    skipped_opt_out: int = 0
    rule_errors: int = 0
    events: int = 0
    refitted: bool = False
    state: ModelState | None = None
    tiers: dict[str, int] = field(default_factory=dict)


def _concat(tables: list[PurchaseTable], offsets: list[int]) -> PurchaseTable:
    if not tables:
        empty_i = np.zeros(0, dtype=np.int64)
        return PurchaseTable(empty_i, empty_i, np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool))
    return PurchaseTable(
        cust=np.concatenate([t.cust + off for t, off in zip(tables, offsets, strict=True)]),
        day=np.concatenate([t.day for t in tables]),
        amount=np.concatenate([t.amount for t in tables]),
        is_purchase=np.concatenate([t.is_purchase for t in tables]),
        unknown_currency=np.concatenate([t.unknown_currency for t in tables]),
    )


def fit_from_context(context: PluginContext, settings: SegmentsSettings, batch_size: int = 5000) -> ModelState:
    """Read every live customer's purchases and refunds, fit a new state and cache it."""
    fx = _fx(settings)
    today = day_number(as_of(context, settings))
    tables: list[PurchaseTable] = []
    offsets: list[int] = []
    n = 0
    for batch in context.iter_customers(batch_size=batch_size):
        eligible = [c.id for c in batch if c.consent.allows("processing")]
        if not eligible:
            continue
        interactions = context.get_interactions(eligible, types=list(_MONETARY))
        tables.append(table_from_interactions(eligible, interactions, fx))
        offsets.append(n)
        n += len(eligible)
    features = compute_features(_concat(tables, offsets), n, today)
    state, _ = fit_model(features, settings, today)
    state.fitted_at = context.now
    put_state(context, settings, state)
    logger.info("segments model fitted on %d customers (%d purchasers)", state.customers, state.purchasers)
    return state


def ensure_state(context: PluginContext, settings: SegmentsSettings) -> tuple[ModelState, bool]:
    """The cached state, fitting one first if this process has none (or the settings changed).

    A state fitted on fewer than ``clv.min_customers`` purchasers is provisional (a young store, or the first
    batch of an initial sync that has customers but no orders yet): it is refitted on every call until the
    base is large enough. Refitting such a small base is cheap.
    """
    state = get_state(context, settings)
    if state is not None and state.purchasers >= settings.clv.min_customers:
        return state, False
    return fit_from_context(context, settings), True


def _interaction_days(items: Sequence[Interaction]) -> list[tuple[str, date]]:
    out = []
    for item in items:
        kind = item.type.value if hasattr(item.type, "value") else str(item.type)
        out.append((kind, item.occurred_at.astimezone(UTC).date()))
    return out


def rescore(
    context: PluginContext, customer_ids: Sequence[str], *, state: ModelState | None = None
) -> RescoreStats:
    """Re-score the given customers with the current fitted state and write their traits.

    Customers who object to profiling (``consent.processing_opt_out``) or are erased are not scored; their
    segment traits are cleared.
    """
    settings = settings_of(context)
    stats = RescoreStats()
    if state is None:
        state, stats.refitted = ensure_state(context, settings)
    stats.state = state
    customers = context.get_customers(list(dict.fromkeys(customer_ids)))
    rules = settings.compiled_rules
    scored: list[Customer] = []
    for customer in customers:
        if customer.consent.allows("processing"):
            scored.append(customer)
            continue
        stats.skipped_opt_out += 1
        if any(customer.trait(name) is not None for name in cleared_traits(rules)):
            context.set_traits(customer.id, cleared_traits(rules), producer=PRODUCER)
    if not scored:
        return stats
    ids = [c.id for c in scored]
    # Other interaction types are only needed by rules that count them.
    every_type = any("interactions_count" in rule.names for rule in rules.values())
    interactions = context.get_interactions(ids, types=None if every_type else list(_MONETARY))
    fx = _fx(settings)
    today_date = as_of(context, settings)
    today = day_number(today_date)
    table = table_from_interactions(ids, interactions, fx)
    features = compute_features(table, len(ids), today)
    scores = score(features, state, settings, today)
    codes = {i: ",".join(sorted(c)) for i, c in (table.unknown_codes or {}).items()}
    rows = batch_traits(scores, settings, list(settings.rfm.segment_map), codes)
    for i, (customer, values) in enumerate(zip(scored, rows, strict=True)):
        if rules:
            _apply_rules(context, customer, values, scores, i, interactions.get(customer.id, []),
                         today_date, settings, stats)
        context.set_traits(customer.id, values, producer=PRODUCER)
        stats.tiers[values["segments.tier"]] = stats.tiers.get(values["segments.tier"], 0) + 1
    stats.customers = len(scored)
    return stats


def _variables(values: Mapping[str, Any], scores: Scores, i: int) -> dict[str, Any]:
    rfm = scores.rfm
    has = rfm.r[i] > 0
    recency = int(rfm.recency_days[i]) if has else None
    return {
        "purchases_count": int(rfm.frequency[i]),
        "refunds_count": None,  # filled by the caller from interactions
        "revenue": values["segments.revenue"],
        "monetary": values["segments.rfm.monetary"],
        "days_since_last_purchase": recency,
        "last_purchase_days": recency,
        "days_since_first_purchase": None,
        "r_score": int(rfm.r[i]),
        "f_score": int(rfm.f[i]),
        "m_score": int(rfm.m[i]),
        "rfm_segment": values["segments.rfm_segment"],
        "tier": values["segments.tier"],
        "clv": values["segments.clv"],
        "p_alive": values["segments.p_alive"],
        "expected_purchases": values["segments.expected_purchases"],
    }


def _apply_rules(
    context: PluginContext,
    customer: Customer,
    values: dict[str, Any],
    scores: Scores,
    i: int,
    interactions: Sequence[Interaction],
    today: date,
    settings: SegmentsSettings,
    stats: RescoreStats,
) -> None:
    history = _interaction_days(interactions)
    variables = _variables(values, scores, i)
    variables["customer"] = customer
    variables["refunds_count"] = sum(1 for kind, _ in history if kind == "refund")
    purchase_days = [d for kind, d in history if kind == "purchase"]
    variables["days_since_first_purchase"] = (today - min(purchase_days)).days if purchase_days else None
    traits = {name: trait.value for name, trait in customer.traits.items()}
    traits.update(values)  # this run's segment traits win over the stored ones
    env = Env(variables, traits, today, history)
    for name, rule in settings.compiled_rules.items():
        key = rule_trait(name)
        try:
            member = rule.evaluate(env)
        except RuleEvaluationError as exc:
            stats.rule_errors += 1
            logger.warning("rule %s failed for customer %s: %s", name, customer.id, exc)
            continue  # keep the previous membership rather than guess
        values[key] = member
        traits[key] = member
        before = customer.trait(key)
        if member and before is not True:
            context.emit_event("segments.entered", customer.id, {"segment": name})
            stats.events += 1
        elif not member and before is True:
            context.emit_event("segments.exited", customer.id, {"segment": name})
            stats.events += 1


def flush(context: PluginContext) -> int:
    """Apply what a collecting context gathered so far, and hand its events to ``events_emitted``.

    The core's store context (``cxbridge.sync.StoreContext``, also what ``Bridge.context()`` returns)
    collects traits, actions and events until ``flush()``. Long jobs and commands call this after every
    batch so memory stays bounded and each batch commits on its own. Contexts without ``flush`` (the test kit's
    :class:`~cxbridge.testing.MemoryContext`) write through; then this does nothing. Returns the number of
    events delivered.
    """
    apply = getattr(context, "flush", None)
    if not callable(apply):
        return 0
    report = apply()
    events = list(getattr(report, "events", None) or [])
    pm = getattr(context, "pm", None)
    if events and pm is not None:
        from cxbridge.plugins import call_isolated

        call_isolated(pm, "events_emitted", context=context, events=events)
        if getattr(context, "pending", False):  # reactions of other plugins
            apply()
    return len(events)


def refit(
    context: PluginContext, batch_size: int = 5000, *, flush_batches: bool = True
) -> RescoreStats:
    """Refit the model on every customer, then re-score every customer in batches.

    :param flush_batches: flush a collecting context after every batch (see :func:`flush`); pass False
        when the caller owns the transaction.
    """
    settings = settings_of(context)
    state = fit_from_context(context, settings, batch_size=batch_size)
    total = RescoreStats(refitted=True, state=state)
    for batch in context.iter_customers(batch_size=batch_size):
        stats = rescore(context, [c.id for c in batch], state=state)
        if flush_batches:
            flush(context)
        total.customers += stats.customers
        total.skipped_opt_out += stats.skipped_opt_out
        total.rule_errors += stats.rule_errors
        total.events += stats.events
        for tier, count in stats.tiers.items():
            total.tiers[tier] = total.tiers.get(tier, 0) + count
    return total
