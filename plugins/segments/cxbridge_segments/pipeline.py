"""The segments pipeline on top of a :class:`~cxbridge.hooktypes.PluginContext`.

- :func:`rescore` -- the incremental path (``customers_changed``): fetch the changed customers and their
  interactions, score them against the cached fitted state, set traits, evaluate rule segments, emit
  entry/exit events.
- :func:`refit` -- the scheduled path (``segments.refit`` job, ``cxbridge segments refit``): read every
  customer's purchases, refit quintiles / CLV / tier boundaries, then re-score everyone in batches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from cxbridge.hooktypes import PluginContext
from cxbridge.models import Customer, Interaction

from .engine import ModelState, Scores, fit_model, score
from .features import (
    PurchaseTable,
    compute_features,
    day_number,
    table_from_interactions,
    table_from_rows,
)
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


def _concat(tables: list[PurchaseTable]) -> PurchaseTable:
    if not tables:
        empty_i = np.zeros(0, dtype=np.int64)
        return PurchaseTable(empty_i, empty_i, np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool))
    return PurchaseTable(
        cust=np.concatenate([t.cust for t in tables]),
        day=np.concatenate([t.day for t in tables]),
        amount=np.concatenate([t.amount for t in tables]),
        is_purchase=np.concatenate([t.is_purchase for t in tables]),
        unknown_currency=np.concatenate([t.unknown_currency for t in tables]),
    )


#: Rows per batch of the columnar stream a fit reads.
FIT_BATCH_ROWS = 50_000


def fit_from_context(
    context: PluginContext,
    settings: SegmentsSettings,
    batch_size: int = FIT_BATCH_ROWS,
    *,
    scored_all: bool = False,
) -> ModelState:
    """Fit a new state from every live customer's purchases and refunds and store it for every process.

    Reads the core's columnar stream (``iter_interaction_rows``: plain tuples, keyset-paged, customers who
    object to profiling left out), so a fit over millions of customers costs one pass over their monetary
    interactions and no per-customer model objects. Customers without any purchase or refund do not enter
    the fit (quintiles and tier boundaries are taken over purchasers only).
    """
    fx = _fx(settings)
    today = day_number(as_of(context, settings))
    tables: list[PurchaseTable] = []
    n = 0
    for rows in context.iter_interaction_rows(list(_MONETARY), batch_size=batch_size):
        table, ids = table_from_rows(rows, fx, offset=n)
        tables.append(table)
        n += len(ids)
    features = compute_features(_concat(tables), n, today)
    del tables
    state, _ = fit_model(features, settings, today)
    state.fitted_at = context.now
    # The growth check compares against the same count query, so opt-outs and dialect details cancel out.
    state.diagnostics["purchaser_count"] = context.count_customers(["purchase"])
    state.diagnostics["scored_all"] = scored_all
    put_state(context, settings, state)
    logger.info("segments model fitted on %d customers (%d purchasers)", state.customers, state.purchasers)
    return state


#: Per process: (store state key, fitted_at) -> monotonic time the next growth count is due.
_NEXT_COUNT: dict[tuple[int, str], float] = {}
#: A growth count may take at most this share of the time between counts (adaptive throttle: a count that
#: takes 1 ms runs on every batch, one that takes 2 s on a 10M-interaction store at most every 100 s).
COUNT_TIME_SHARE = 0.02
#: Counts faster than this are never throttled (a small store counts on every batch).
COUNT_FREE_SECONDS = 0.01


def population_grew(context: PluginContext, settings: SegmentsSettings, state: ModelState) -> bool:
    """Whether the purchasers have grown by more than ``refit_growth_share`` since ``state`` was fitted.

    One count query (``count_customers(["purchase"])``), throttled per process so that counting costs at
    most :data:`COUNT_TIME_SHARE` of the time.
    """
    fitted_on = state.diagnostics.get("purchaser_count", state.purchasers)
    key = (id(getattr(context, "store", context)), state.fitted_at.isoformat())
    now = time.monotonic()
    if _NEXT_COUNT.get(key, 0.0) > now:
        return False
    started = time.perf_counter()
    current = context.count_customers(["purchase"])
    took = time.perf_counter() - started
    if len(_NEXT_COUNT) > 1000:
        _NEXT_COUNT.clear()
    if took >= COUNT_FREE_SECONDS:
        _NEXT_COUNT[key] = now + took / COUNT_TIME_SHARE
    return current > fitted_on * (1.0 + settings.refit_growth_share)


_TOO_OLD = "older than refit_every_seconds"


def state_is_stale(context: PluginContext, settings: SegmentsSettings, state: ModelState | None) -> str | None:
    """Why ``state`` must be refitted now (None if it is good): missing, provisional, grown or old."""
    if state is None:
        return "no fitted state"
    if state.purchasers < settings.clv.min_customers:
        return "provisional fit"
    if (context.now - state.fitted_at).total_seconds() >= settings.refit_every_seconds:
        return _TOO_OLD
    if population_grew(context, settings, state):
        return f"purchasers grew by more than {settings.refit_growth_share:.0%}"
    return None


def ensure_state(context: PluginContext, settings: SegmentsSettings) -> tuple[ModelState, bool]:
    """The stored state, refitted first if there is none, or it was fitted on fewer than
    ``clv.min_customers`` purchasers (a young store, or the first pages of an initial load), or the purchasers
    have grown by more than ``refit_growth_share`` since (an initial load in many pages), or the settings
    changed. Age alone is left to the ``segments.refit`` job, which also re-scores everyone.

    A state fitted here is marked ``scored_all = False``: only the customers scored since saw it, and the
    next run of the refit job re-scores everyone.
    """
    state = get_state(context, settings)
    reason = state_is_stale(context, settings, state)
    if state is not None and reason in (None, _TOO_OLD):
        return state, False
    logger.info("segments: refitting during scoring (%s)", reason)
    state = fit_from_context(context, settings)
    return state, True


def _interaction_days(items: Sequence[Interaction]) -> list[tuple[str, date]]:
    out = []
    for item in items:
        kind = item.type.value if hasattr(item.type, "value") else str(item.type)
        out.append((kind, item.occurred_at.astimezone(UTC).date()))
    return out


def rescore(
    context: PluginContext,
    customer_ids: Sequence[str],
    *,
    state: ModelState | None = None,
    customers: Sequence[Customer] | None = None,
) -> RescoreStats:
    """Re-score the given customers with the current fitted state and write their traits.

    Customers who object to profiling (``consent.processing_opt_out``) or are erased are not scored; their
    segment traits are cleared.

    :param customers: the customers already loaded (a refit iterating over them); default: loaded here.
    """
    settings = settings_of(context)
    stats = RescoreStats()
    if state is None:
        state, stats.refitted = ensure_state(context, settings)
    stats.state = state
    if customers is None:
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
        changed = _changed(customer, values)
        if changed:
            context.set_traits(customer.id, changed, producer=PRODUCER)
        stats.tiers[values["segments.tier"]] = stats.tiers.get(values["segments.tier"], 0) + 1
    stats.customers = len(scored)
    return stats


def _changed(customer: Customer, values: dict[str, Any]) -> dict[str, Any]:
    """The traits whose value differs from what the customer carries already.

    Re-scoring mostly confirms yesterday's values; handing only the differences to the context keeps a
    store's flush from reading back and comparing every trait of every re-scored customer.
    """
    current = customer.traits
    out = {}
    for name, value in values.items():
        trait = current.get(name)
        # Numbers compare by value (a stored 4.0 may read back as 4); booleans never equal numbers here.
        if trait is None or isinstance(trait.value, bool) is not isinstance(value, bool) or trait.value != value:
            out[name] = value
    return out


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
    """Refit the model from the columnar stream, then re-score every customer in batches.

    The new state is stored before the re-scoring starts (other processes score against it at once) and
    again, marked ``scored_all``, once every customer has been re-scored.

    :param flush_batches: flush a collecting context after every batch (see :func:`flush`); pass False
        when the caller owns the transaction.
    """
    settings = settings_of(context)
    state = fit_from_context(context, settings)
    total = RescoreStats(refitted=True, state=state)
    for batch in context.iter_customers(batch_size=batch_size):
        stats = rescore(context, [c.id for c in batch], state=state, customers=batch)
        if flush_batches:
            flush(context)
        total.customers += stats.customers
        total.skipped_opt_out += stats.skipped_opt_out
        total.rule_errors += stats.rule_errors
        total.events += stats.events
        for tier, count in stats.tiers.items():
            total.tiers[tier] = total.tiers.get(tier, 0) + count
    state.diagnostics["scored_all"] = True
    put_state(context, settings, state)
    return total
