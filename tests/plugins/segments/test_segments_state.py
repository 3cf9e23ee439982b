"""The fitted model in the store: shared by every process, refitted when the purchasers grow, applied to
everyone by the refit job; the fit reads the core's columnar stream and agrees with the per-customer path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from cxbridge_segments import pipeline, plugin
from cxbridge_segments.features import compute_features, day_number, table_from_interactions, table_from_rows
from cxbridge_segments.money import FxTable
from cxbridge_segments.pipeline import rescore
from cxbridge_segments.settings import SegmentsSettings
from cxbridge_segments.state import STATE_KEY, get_state
from segments_fakes import AS_OF, StoreLikeContext, buy, customer
from test_segments_plugin import population

from cxbridge.models import Consent


@pytest.fixture(autouse=True)
def _count_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Growth counts on these small contexts are never throttled, whatever the machine's load (the throttle
    has its own test)."""
    monkeypatch.setattr(pipeline, "COUNT_FREE_SECONDS", float("inf"))


def context(n: int = 80, settings: SegmentsSettings | None = None) -> StoreLikeContext:
    customers, interactions = population(n)
    settings = settings or SegmentsSettings(as_of=AS_OF)
    return StoreLikeContext(customers, interactions, settings={"segments": settings}, now=AS_OF)


def test_the_fit_is_stored_as_json_and_read_back_by_another_process() -> None:
    ctx = context()
    first = rescore(ctx, ["c5"])
    assert first.refitted
    stored = ctx.get_state(STATE_KEY)
    assert stored["state"]["purchasers"] == 79 and stored["state"]["diagnostics"]["purchaser_count"] == 79
    assert stored["state"]["fitted_at"] == AS_OF.isoformat()
    # Another worker: same store state, own memory -- it scores with the stored fit, no refit.
    later = AS_OF + timedelta(minutes=5)
    other = StoreLikeContext(list(ctx.customers.values()), ctx.interactions,
                             settings={"segments": SegmentsSettings(as_of=AS_OF)}, now=later)
    other.state = dict(ctx.state)
    second = rescore(other, ["c5"])
    assert not second.refitted and second.state.edges == first.state.edges
    assert "c5" not in other.traits  # the same fit gives the same values: nothing to rewrite


def test_an_initial_load_in_pages_is_not_scored_against_its_first_page_only() -> None:
    """Purchasers arrive page by page: the fit follows the population while it grows by more than 10 %."""
    customers, interactions = population(400, seed=3)
    ctx = StoreLikeContext([], [], settings={"segments": SegmentsSettings(as_of=AS_OF)}, now=AS_OF)
    fits = []
    for start in range(0, 400, 40):  # ten pages of 40 customers with their orders
        page = customers[start : start + 40]
        ids = {c.id for c in page}
        ctx.customers.update({c.id: c for c in page})
        ctx.interactions += [i for i in interactions if i.customer_id in ids]
        stats = rescore(ctx, sorted(ids))
        fits.append((stats.refitted, stats.state.purchasers))
    refits = [n for refitted, n in fits if refitted]
    assert len(refits) >= 5  # 40 -> 400 purchasers: refitted whenever the base grew by more than 10 %
    final = get_state(ctx, SegmentsSettings(as_of=AS_OF))
    assert final.purchasers >= 0.9 * ctx.count_customers(["purchase"])  # the last fit saw >= 90 % of the base
    assert final.diagnostics["scored_all"] is False
    # The refit job applies the final population's fit to everyone, although the state is fresh.
    plugin.refit_job(ctx)
    after = get_state(ctx, SegmentsSettings(as_of=AS_OF))
    assert after.diagnostics["scored_all"] is True and after.purchasers == ctx.count_customers(["purchase"])
    writes = ctx.trait_writes
    plugin.refit_job(ctx)  # nothing to do now
    assert ctx.trait_writes == writes


def test_growth_threshold_is_configurable() -> None:
    ctx = context(settings=SegmentsSettings(as_of=AS_OF, refit_growth_share=0.5))
    assert rescore(ctx, ["c5"]).refitted
    for k in range(30):  # 79 -> 109 purchasers: +38 %, below the 50 % threshold
        ctx.customers[f"n{k}"] = customer(f"n{k}")
        ctx.interactions.append(buy(f"n{k}", 3, 20.0))
    assert not rescore(ctx, ["n0"]).refitted
    for k in range(30, 40):  # 119: +51 %
        ctx.customers[f"n{k}"] = customer(f"n{k}")
        ctx.interactions.append(buy(f"n{k}", 3, 20.0))
    assert rescore(ctx, ["n0"]).refitted


def test_settings_that_change_the_model_invalidate_the_stored_state() -> None:
    ctx = context()
    rescore(ctx, ["c5"])
    assert get_state(ctx, SegmentsSettings(as_of=AS_OF)) is not None
    assert get_state(ctx, SegmentsSettings(as_of=AS_OF, reporting_currency="USD")) is None
    assert get_state(ctx, SegmentsSettings(as_of=AS_OF, refit_every_seconds=5)) is not None  # policy only


def test_stream_rows_and_interactions_give_the_same_features() -> None:
    customers, interactions = population(60)
    interactions += [buy("c3", 5, 40.0, "USD"), buy("c3", 4, 10.0, kind="refund"), buy("c4", 2, None),
                     buy("c4", 1, -15.0), buy("c6", 1, 5.0, "XYZ")]
    ctx = StoreLikeContext(customers, interactions, settings={"segments": SegmentsSettings()}, now=AS_OF)
    fx = FxTable("EUR", {"USD": 0.9})
    today = day_number(AS_OF)
    tables, ids = [], []
    for rows in ctx.iter_interaction_rows(["purchase", "refund"], batch_size=25):
        table, batch_ids = table_from_rows(rows, fx, offset=len(ids))
        tables.append(table)
        ids += batch_ids
    by_rows: Any = compute_features(_concat(tables), len(ids), today)
    by_models = compute_features(table_from_interactions(ids, ctx.get_interactions(ids), fx), len(ids), today)
    for name in ("purchases", "first_day", "last_day", "net_value", "purchase_days", "repeat_value",
                 "unknown_currency"):
        assert np.allclose(getattr(by_rows, name), getattr(by_models, name)), name
    assert by_rows.unknown_currency[ids.index("c6")]


def test_opted_out_customers_do_not_enter_the_fit() -> None:
    ctx = context()
    rescore(ctx, ["c5"])
    ctx.customers["c1"].consent = Consent(processing_opt_out=True)
    ctx.now = AS_OF + timedelta(days=2)
    plugin.refit_job(ctx)
    assert get_state(ctx, SegmentsSettings(as_of=AS_OF)).purchasers == 78


def _concat(tables: list[Any]) -> Any:
    from cxbridge_segments.pipeline import _concat as concat

    return concat(tables)


def test_slow_growth_counts_are_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A count that takes long (a large store) runs at most every took / COUNT_TIME_SHARE seconds."""
    ctx = context()
    rescore(ctx, ["c5"])
    clock = iter([100.0, 120.0, 200.0])  # monotonic time of each check
    perf = iter([0.0, 1.0, 5.0, 6.0])  # each count "takes" 1 s
    monkeypatch.setattr(pipeline, "COUNT_FREE_SECONDS", 0.01)
    monkeypatch.setattr(pipeline.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: next(perf))
    counts = []
    monkeypatch.setattr(ctx, "count_customers", lambda types=None: counts.append(types) or 79)
    state = get_state(ctx, SegmentsSettings(as_of=AS_OF))
    assert not pipeline.population_grew(ctx, SegmentsSettings(as_of=AS_OF), state)  # counted at t=100
    assert not pipeline.population_grew(ctx, SegmentsSettings(as_of=AS_OF), state)  # t=120 < 100 + 1/0.02: skipped
    assert len(counts) == 1
    assert not pipeline.population_grew(ctx, SegmentsSettings(as_of=AS_OF), state)  # t=200 > 100 + 1/0.02
    assert len(counts) == 2
