"""Benchmark of the segments plugin: 1M customers, 10M purchases (ARCHITECTURE §8, issue 4).

Measures, on this machine:

1. full pipeline -- per-customer features from the 10M-row purchase table, RFM quintiles, BG/NBD and
   Gamma-Gamma fits (on a 250k-purchaser sample, the default ``clv.fit_sample_size``), scoring of every
   customer (RFM, P(alive), expected purchases, CLV over 12 months) and tier boundaries + tiers;
2. trait materialisation -- the per-customer trait dicts for all customers (what would be written);
3. incremental re-scoring of 1,000 changed customers through the plugin's real hook path
   (``pipeline.rescore`` on an in-memory PluginContext holding their ~10k Interaction objects), against the
   fitted state.

Peak memory is the process's maximum resident set size (``resource.getrusage``), reported after data
generation and at the end. Run::

    .venv/bin/python bench/segments/bench_segments.py            # 1M / 10M, 3 repeats
    .venv/bin/python bench/segments/bench_segments.py --customers 100000 --purchases 1000000 --repeat 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from cxbridge_segments.engine import fit_model, score
from cxbridge_segments.features import PurchaseTable, compute_features, day_number
from cxbridge_segments.pipeline import rescore
from cxbridge_segments.settings import SegmentsSettings
from cxbridge_segments.state import put_state
from cxbridge_segments.traits import batch_traits

from cxbridge.models import Customer, Interaction
from cxbridge.testing import MemoryContext

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
CURRENCIES = ("EUR", "USD", "GBP")
RATES = np.array([1.0, 0.92, 1.17])


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def generate(customers: int, purchases: int, seed: int = 42) -> dict[str, np.ndarray]:
    """A synthetic purchase log in the BG/NBD spirit, vectorised: customers join over three years, buy at
    heterogeneous rates within a heterogeneous active lifetime; 2 % of rows are refunds; three currencies."""
    rng = np.random.default_rng(seed)
    today = day_number(AS_OF)
    # 10 % never purchase; the others get a gamma-mixed share of the purchases.
    buyers = rng.random(customers) >= 0.10
    weight = np.where(buyers, rng.gamma(0.8, 1.0, customers), 0.0)
    counts = rng.multinomial(purchases, weight / weight.sum()).astype(np.int64)
    first = (today - rng.integers(0, 3 * 365, customers)).astype(np.int32)
    life = rng.exponential(rng.gamma(0.6, 700.0, customers))  # heterogeneous active lifetimes (days)
    span = np.minimum(today - first, life).astype(np.float32)
    cust = np.repeat(np.arange(customers, dtype=np.int32), counts)
    offset = np.zeros(purchases, dtype=np.float32)
    # The first purchase of every buyer is at `first`; the rest uniform within the active span.
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rest = np.ones(purchases, dtype=bool)
    rest[starts[counts > 0]] = False
    offset[rest] = rng.random(int(rest.sum()), dtype=np.float32) * span[cust[rest]]
    day = first[cust] + offset.astype(np.int32)
    amount = rng.lognormal(3.4, 0.8, purchases).astype(np.float32)
    refund = rng.random(purchases) < 0.02
    refund[starts[counts > 0]] = False
    amount[refund] *= -0.5
    currency = rng.choice(3, purchases, p=[0.7, 0.2, 0.1]).astype(np.int8)
    return {"cust": cust, "day": day, "amount": amount, "currency": currency, "refund": refund,
            "customers": np.array(customers)}


def table_of(data: dict[str, np.ndarray]) -> PurchaseTable:
    """The columnar purchase table in the reporting currency (FX by a rate lookup per row)."""
    amount = data["amount"].astype(np.float64) * RATES[data["currency"]]
    n = data["cust"].size
    return PurchaseTable(cust=data["cust"].astype(np.int64), day=data["day"].astype(np.int64), amount=amount,
                         is_purchase=~data["refund"], unknown_currency=np.zeros(n, dtype=bool))


def full_run(data: dict[str, np.ndarray], settings: SegmentsSettings) -> tuple[dict[str, float], object]:
    today = day_number(AS_OF)
    n = int(data["customers"])
    timings: dict[str, float] = {}
    c0 = time.process_time()
    t0 = time.perf_counter()
    table = table_of(data)
    features = compute_features(table, n, today)
    del table
    t1 = time.perf_counter()
    state, scores = fit_model(features, settings, today)
    t2 = time.perf_counter()
    timings["features_s"] = t1 - t0
    timings["fit_and_score_s"] = t2 - t1
    timings["total_s"] = t2 - t0
    timings["cpu_s"] = time.process_time() - c0  # CPU seconds of this process (all threads)
    timings["bgnbd_fit_s"] = state.diagnostics.get("bgnbd_fit_seconds", float("nan"))
    timings["gamma_gamma_fit_s"] = state.diagnostics.get("gamma_gamma_fit_seconds", float("nan"))
    return timings, (state, scores, features)


def materialise_traits(scores, settings: SegmentsSettings) -> float:
    t0 = time.perf_counter()
    rows = batch_traits(scores, settings, list(settings.rfm.segment_map))
    assert len(rows) == scores.tier.size
    return time.perf_counter() - t0


def incremental(data: dict[str, np.ndarray], state, settings: SegmentsSettings, changed: int,
                repeat: int) -> tuple[list[float], int]:
    """Re-score ``changed`` customers through pipeline.rescore on an in-memory context."""
    rng = np.random.default_rng(7)
    n = int(data["customers"])
    ids = np.sort(rng.choice(n, changed, replace=False))
    rows = np.flatnonzero(np.isin(data["cust"], ids))
    customers = [Customer(id=f"c{i}") for i in ids]
    epoch = datetime(1970, 1, 1, 12, tzinfo=UTC)
    interactions = []
    for r in rows:
        refund = bool(data["refund"][r])
        interactions.append(Interaction(
            id=f"i{r}", customer_id=f"c{data['cust'][r]}", source="shop", object_type="orders",
            source_id=str(r), type="refund" if refund else "purchase",
            occurred_at=epoch + timedelta(days=int(data["day"][r])),
            amount=Decimal(f"{abs(float(data['amount'][r])):.2f}"),
            currency=CURRENCIES[int(data["currency"][r])],
        ))
    context = MemoryContext(customers, interactions, settings={"segments": settings}, now=AS_OF)
    put_state(context, settings, state)
    times = []
    for _ in range(repeat):
        context.traits.clear()
        t0 = time.perf_counter()
        stats = rescore(context, [c.id for c in customers])
        times.append(time.perf_counter() - t0)
        assert stats.customers == changed and not stats.refitted
    return times, len(interactions)


def incremental_store(data: dict[str, np.ndarray], state, settings: SegmentsSettings, changed: int,
                      repeat: int, workdir: str) -> tuple[list[float], list[float], int]:
    """The same 1,000-customer re-score on a real SQLite store: the customers and their orders are synced
    into the store by the sync engine (memory adapter), then ``rescore`` + ``flush`` on a StoreContext is
    timed -- store reads, scoring, rules, trait diffing and the trait/history writes included. Returns the
    times with every trait rewritten (worst case) and with nothing changed."""
    from pathlib import Path

    from cxbridge_segments import plugin as segments_plugin
    from cxbridge_segments.pipeline import flush

    from cxbridge.adapters import StreamInfo
    from cxbridge.config import config_from_dict
    from cxbridge.store import open_store
    from cxbridge.sync import StoreContext
    from cxbridge.testing.memory import MemoryAdapter, memory_setup

    rng = np.random.default_rng(7)
    n = int(data["customers"])
    ids = np.sort(rng.choice(n, changed, replace=False))
    rows = np.flatnonzero(np.isin(data["cust"], ids))
    adapter = MemoryAdapter("shop", [
        StreamInfo("customers", "customers", "customer", default_mapping={"emails": "email"}),
        StreamInfo("orders", "orders", "interaction", customer_object="customers",
                   default_mapping={"customer_ref": "cust", "amount": "total", "currency": "cur",
                                    "type": "kind", "channel": "=web", "occurred_at": "at"}),
    ])
    stamp = AS_OF - timedelta(days=1)
    for i in ids:
        adapter.put("customers", str(i), {"email": f"c{i}@example.com"}, modstamp=stamp)
    epoch = datetime(1970, 1, 1, 12, tzinfo=UTC)
    for r in rows:
        adapter.put("orders", str(r), {
            "cust": str(data["cust"][r]), "total": f"{abs(float(data['amount'][r])):.2f}",
            "cur": CURRENCIES[int(data["currency"][r])], "kind": "refund" if data["refund"][r] else "purchase",
            "at": (epoch + timedelta(days=int(data["day"][r]))).isoformat()}, modstamp=stamp)
    store = open_store(f"sqlite:///{Path(workdir) / 'bench.db'}")
    engine = memory_setup(store, {"shop": adapter}, config={"sync": {"lookback_seconds": 0}}, now=lambda: AS_OF)
    engine.run()
    from sqlalchemy import select

    from cxbridge.store import schema as s

    with store.connect() as conn:
        golden = [r[0] for r in conn.execute(select(s.customers.c.id))]
    engine.pm.register(segments_plugin)
    config = config_from_dict({"sources": {"shop": {"adapter": "memory-shop"}},
                               "plugins": {"segments": settings.model_dump(mode="json", exclude_defaults=True)}},
                              pm=engine.pm)
    fresh, unchanged = [], []
    for k in range(repeat):
        # Worst case first: every stored trait of the 1,000 customers is stale, so all ~20 per customer are
        # rewritten with a history row each (k = 0 writes them for the first time). Then the same customers
        # again: nothing changed, so only the reads, the scoring and the comparison remain.
        if k:
            with store.begin() as conn:
                conn.execute(s.traits.update().values(value="stale"))
        for times in (fresh, unchanged):
            context = StoreContext(store, config, engine.pm, now=AS_OF + timedelta(seconds=k))
            put_state(context, settings, state)
            t0 = time.perf_counter()
            stats = rescore(context, golden)
            flush(context)
            times.append(time.perf_counter() - t0)
            assert stats.customers == changed and not stats.refitted
    store.close()
    return fresh, unchanged, len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--purchases", type=int, default=10_000_000)
    parser.add_argument("--changed", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    settings = SegmentsSettings(
        as_of=AS_OF, fx_rates={"USD": float(RATES[1]), "GBP": float(RATES[2])},
        tiers={"metric": "clv"}, rules={"lapsed_vip": 'tier in ("platinum", "gold") and '
                                                      "days_since_last_purchase > 90"},
    )
    t0 = time.perf_counter()
    data = generate(args.customers, args.purchases)
    gen_s = time.perf_counter() - t0
    rss_after_gen = max_rss_mib()
    runs = []
    result = None
    for _ in range(args.repeat):
        result = None
        gc.collect()
        timings, result = full_run(data, settings)
        runs.append(timings)
        print(f"full run: {timings}", file=sys.stderr)
    state, scores, features = result  # type: ignore[misc]
    traits_s = materialise_traits(scores, settings)
    inc_times, inc_rows = incremental(data, state, settings, args.changed, max(args.repeat, 3))
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        store_times, store_unchanged, _ = incremental_store(data, state, settings, args.changed,
                                                            max(args.repeat, 3), workdir)
    # Cross-check: the array path scores the same customers identically to a full-batch score.
    sub = np.arange(min(1000, features.n))
    check = score(features.subset(sub), state, settings, day_number(AS_OF))
    assert np.array_equal(check.tier, scores.tier[sub])
    out = {
        "customers": args.customers,
        "purchases": args.purchases,
        "purchasers": state.purchasers,
        "generate_s": round(gen_s, 2),
        "features_s_median": round(statistics.median(r["features_s"] for r in runs), 2),
        "fit_and_score_s_median": round(statistics.median(r["fit_and_score_s"] for r in runs), 2),
        "total_s_median": round(statistics.median(r["total_s"] for r in runs), 2),
        "total_s_runs": [round(r["total_s"], 2) for r in runs],
        "cpu_s_median": round(statistics.median(r["cpu_s"] for r in runs), 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "bgnbd_fit_s_median": round(statistics.median(r["bgnbd_fit_s"] for r in runs), 2),
        "gamma_gamma_fit_s_median": round(statistics.median(r["gamma_gamma_fit_s"] for r in runs), 2),
        "traits_materialise_s": round(traits_s, 2),
        "peak_rss_after_generation_mib": round(rss_after_gen),
        "peak_rss_mib": round(max_rss_mib()),
        "incremental_customers": args.changed,
        "incremental_interactions": inc_rows,
        "incremental_s_median": round(statistics.median(inc_times), 3),
        "incremental_s_runs": [round(t, 3) for t in inc_times],
        "incremental_sqlite_store_s_median": round(statistics.median(store_times), 3),
        "incremental_sqlite_store_s_runs": [round(t, 3) for t in store_times],
        "incremental_sqlite_store_unchanged_s_median": round(statistics.median(store_unchanged), 3),
        "incremental_sqlite_store_unchanged_s_runs": [round(t, 3) for t in store_unchanged],
        "bgnbd": state.bgnbd.as_dict() if state.bgnbd else None,
        "gamma_gamma": state.gamma_gamma.as_dict() if state.gamma_gamma else None,
        "tier_counts": np.bincount(scores.tier, minlength=len(settings.tiers.levels)).tolist(),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
