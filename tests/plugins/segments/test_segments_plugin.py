"""The plugin's hooks on an in-memory PluginContext: traits, incremental scoring, rule events, consent, jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from cxbridge_segments import plugin
from cxbridge_segments.pipeline import rescore
from cxbridge_segments.settings import SegmentsSettings
from cxbridge_segments.state import clear_states, get_state
from segments_fakes import AS_OF, StoreLikeContext, buy, customer

from cxbridge.models import Consent, Trait
from cxbridge.plugins import call_isolated
from cxbridge.registry import collect_commands, collect_jobs, collect_settings, collect_traits


@pytest.fixture(autouse=True)
def _fresh_states():
    clear_states()
    yield
    clear_states()


def population(n: int = 80, seed: int = 7):
    """``n`` customers buying as the BG/NBD story goes (Poisson purchases, dropout after each purchase) over
    two years; c0 has no purchases, c1 is an old big spender."""
    rng = np.random.default_rng(seed)
    customers = [customer(f"c{i}", emails=[f"c{i}@example.com"]) for i in range(n)]
    interactions = []
    for i in range(2, n):
        day = int(rng.integers(0, 700))  # days before AS_OF of the first purchase
        rate = rng.gamma(1.5, 1 / 30)  # purchases per day
        while day >= 0:
            interactions.append(buy(f"c{i}", day, round(float(rng.gamma(2, 30)), 2)))
            if rng.random() < 0.25:
                break
            day -= int(rng.exponential(1 / rate)) + 1
    interactions += [buy("c1", 690 + k, 900.0) for k in range(6)]
    return customers, interactions


def make_context(settings: SegmentsSettings | None = None, n: int = 80) -> StoreLikeContext:
    customers, interactions = population(n)
    settings = settings or SegmentsSettings(as_of=AS_OF, rules={
        "lapsed_big": 'days_since_last_purchase > 90 and revenue > 1000',
        "gold_detractor": 'tier == "gold" and trait("nps.category") == "detractor"',
    })
    return StoreLikeContext(customers, interactions, settings={"segments": settings}, now=AS_OF)


def test_customers_changed_scores_only_the_changed_customers() -> None:
    ctx = make_context()
    plugin.customers_changed(ctx, ["c0", "c1", "c5"])
    assert set(ctx.traits) == {"c0", "c1", "c5"}
    c0, c1, c5 = ctx.traits["c0"], ctx.traits["c1"], ctx.traits["c5"]
    # No purchases: no RFM segment, catch-all tier, service level present.
    assert c0["segments.rfm_segment"] is None and c0["segments.rfm.r_score"] is None
    assert c0["segments.tier"] == "bronze" and c0["segments.service_level.response_time_hours"] == 72
    assert c0["segments.clv"] is None and c0["segments.revenue"] == 0.0
    # The old big spender: least recent, most valuable -> "Can't Lose Them" or "At Risk"; lapsed rule is true.
    assert c1["segments.rfm.r_score"] == 1 and c1["segments.rfm.m_score"] == 5
    assert c1["segments.rfm_segment"] in ("Can't Lose Them", "At Risk")
    assert c1["segments.revenue"] == 5400.0 and c1["segments.tier"] == "platinum"
    assert c1["segments.rule.lapsed_big"] is True
    assert c5["segments.clv"] is not None and c5["segments.clv"] > 0
    assert 0 < c5["segments.p_alive"] <= 1
    assert ctx.trait_producers["c1"]["segments.tier"] == "segments"
    state = get_state(ctx, SegmentsSettings.model_validate(ctx.settings("segments").model_dump()))
    assert state is not None and state.bgnbd is not None and state.purchasers == 79


def test_rule_entry_and_exit_events_and_membership_history() -> None:
    ctx = make_context()
    plugin.customers_changed(ctx, ["c1"])
    assert [(e["name"], e["payload"]) for e in ctx.events] == [("segments.entered", {"segment": "lapsed_big"})]
    plugin.customers_changed(ctx, ["c1"])  # nothing changed: no new event, nothing rewritten
    writes = ctx.trait_writes
    assert len(ctx.events) == 1
    ctx.interactions.append(buy("c1", 1, 20.0))  # a purchase yesterday -> no longer lapsed
    plugin.customers_changed(ctx, ["c1"])
    assert ctx.events[-1]["name"] == "segments.exited" and ctx.events[-1]["customer_id"] == "c1"
    assert ctx.traits["c1"]["segments.rule.lapsed_big"] is False
    assert ctx.trait_writes > writes


def test_rules_see_other_plugins_traits_and_this_runs_tier() -> None:
    ctx = make_context()
    plugin.customers_changed(ctx, [f"c{i}" for i in range(80)])
    gold = [cid for cid, t in ctx.traits.items() if t["segments.tier"] == "gold"]
    assert gold
    target = ctx.customers[gold[0]]
    ctx.set_traits(target.id, {"nps.category": "detractor"}, producer="nps")
    plugin.customers_changed(ctx, [target.id])
    assert ctx.traits[target.id]["segments.rule.gold_detractor"] is True
    assert {"name": "segments.entered", "customer_id": target.id} .items() <= ctx.events[-1].items()


def test_incremental_scoring_uses_the_fitted_boundaries() -> None:
    ctx = make_context()
    first = rescore(ctx, ["c2"])
    assert first.refitted
    edges = first.state.edges
    ctx.interactions += [buy("c2", 0, 50_000.0)]
    second = rescore(ctx, ["c2"])
    assert not second.refitted and second.state.edges == edges
    assert ctx.traits["c2"]["segments.rfm.m_score"] == 5 and ctx.traits["c2"]["segments.tier"] == "platinum"


def test_customers_objecting_to_profiling_are_not_scored_and_are_cleared() -> None:
    ctx = make_context()
    plugin.customers_changed(ctx, ["c3"])
    assert ctx.traits["c3"]["segments.tier"] is not None
    ctx.customers["c3"].consent = Consent(processing_opt_out=True)
    stats = rescore(ctx, ["c3"])
    assert stats.skipped_opt_out == 1
    assert all(value is None for name, value in ctx.traits["c3"].items() if name.startswith("segments."))


def test_mixed_and_unknown_currencies_reach_the_traits() -> None:
    settings = SegmentsSettings(as_of=AS_OF, fx_rates={"USD": 0.5})
    ctx = make_context(settings)
    ctx.interactions += [buy("c0", 3, 100, "USD"), buy("c0", 2, 100, "EUR"), buy("c0", 1, 7, "XYZ"),
                         buy("c0", 1, 30, "EUR", kind="refund")]
    plugin.customers_changed(ctx, ["c0"])
    traits = ctx.traits["c0"]
    assert traits["segments.revenue"] == 120.0  # 50 + 100 - 30; XYZ left out
    assert traits["segments.unconverted_currencies"] == "XYZ"
    assert traits["segments.rfm.frequency"] == 3


def test_refit_job_respects_the_interval() -> None:
    settings = SegmentsSettings(refit_every_seconds=3600)
    ctx = make_context(settings)
    plugin.refit_job(ctx)
    fitted = get_state(ctx, settings)
    assert fitted is not None and len(ctx.traits) == 80
    ctx.now = AS_OF + timedelta(minutes=30)
    plugin.refit_job(ctx)
    assert get_state(ctx, settings).fitted_at == fitted.fitted_at  # too early: no refit
    ctx.now = AS_OF + timedelta(hours=2)
    plugin.refit_job(ctx)
    assert get_state(ctx, settings).fitted_at == AS_OF + timedelta(hours=2)


def test_too_few_purchasers_still_gives_rfm_and_tiers_without_clv() -> None:
    ctx = make_context(SegmentsSettings(as_of=AS_OF), n=8)
    plugin.customers_changed(ctx, [f"c{i}" for i in range(8)])
    assert all(t["segments.clv"] is None for t in ctx.traits.values())
    assert all(t["segments.tier"] for t in ctx.traits.values())
    assert ctx.traits["c1"]["segments.rfm_segment"] is not None


def test_registration_through_the_plugin_manager(plugin_manager, register_plugin) -> None:
    register_plugin(plugin, name="segments")
    assert collect_settings(plugin_manager)["segments"].model is SegmentsSettings
    traits = collect_traits(plugin_manager)
    assert {"segments.tier", "segments.rfm_segment", "segments.clv",
            "segments.service_level.response_time_hours"} <= set(traits)
    assert traits["segments.service_level.account_manager"].type == "boolean"
    assert collect_jobs(plugin_manager)["segments.refit"].func is plugin.refit_job
    assert "segments" in collect_commands(plugin_manager)
    ctx = make_context()
    failures = []
    call_isolated(plugin_manager, "customers_changed", context=ctx, customer_ids=["c1"],
                  on_failure=failures.append)
    assert not failures and ctx.traits["c1"]["segments.tier"] == "platinum"


def test_interaction_counting_rules_fetch_every_type_others_only_money() -> None:
    requested: list[Any] = []

    class Spy(StoreLikeContext):
        def get_interactions(self, customer_ids, types=None):
            requested.append(types)
            return super().get_interactions(customer_ids, types)

    customers, interactions = population(30)
    interactions.append(buy("c4", 3, None, None, kind="call"))
    settings = SegmentsSettings(as_of=AS_OF, rules={"called": 'interactions_count("call", 30) >= 1'})
    ctx = Spy(customers, interactions, settings={"segments": settings}, now=AS_OF)
    rescore(ctx, ["c4", "c5"])
    assert requested[-1] is None
    assert ctx.traits["c4"]["segments.rule.called"] is True and ctx.traits["c5"]["segments.rule.called"] is False
    plain = Spy(customers, interactions, settings={"segments": SegmentsSettings(as_of=AS_OF, rules={
        "big": "revenue > 100"})}, now=AS_OF)
    requested.clear()
    rescore(plain, ["c4"])
    assert requested[-1] == ["purchase", "refund"]


def test_changed_settings_refit_the_state() -> None:
    ctx = make_context()
    first = rescore(ctx, ["c2"])
    again = rescore(ctx, ["c2"])
    assert first.refitted and not again.refitted
    # Another context on the same (default-keyed) store with a different CLV horizon: the cached state no
    # longer matches the settings and is refitted.
    other = make_context(SegmentsSettings(as_of=AS_OF, clv={"horizon_months": 24}))
    assert rescore(other, ["c2"]).refitted
    assert not rescore(other, ["c2"]).refitted


def test_report_escapes_names_and_counts_groups() -> None:
    from datetime import datetime

    from cxbridge_segments.report import build_report, render_html

    people = [customer(f"p{i}") for i in range(3)]
    for i, person in enumerate(people):
        values = {"segments.tier": "<b>gold</b>" if i else "bronze", "segments.revenue": 100.0 * i,
                  "segments.rfm_segment": "Champions" if i else None}
        for name, value in values.items():
            person.traits[name] = Trait(name=name, value=value, producer="segments", computed_at=AS_OF)
    data = build_report(people, currency="EUR", generated_at=datetime(2024, 1, 1), segment_order=["Champions"])
    assert data.customers == 3 and data.revenue == 300.0
    assert data.segments["Champions"].customers == 2 and data.segments["No purchases"].customers == 1
    page = render_html(data)
    assert "<b>gold</b>" not in page and "&lt;b&gt;gold&lt;/b&gt;" in page
    assert data.share(data.tiers["<b>gold</b>"], "revenue") == 1.0
