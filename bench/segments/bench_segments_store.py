"""Segments refit THROUGH a real SQLite store (issue 4 follow-up): the columnar stream, the fit, the count.

Builds a migrated SQLite store holding N customers and M purchase/refund interactions (the synthetic log of
``bench_segments.generate``, rows inserted in time order -- as orders arrive -- with bulk ``executemany``), then
measures through :class:`cxbridge.sync.StoreContext`, the context the daemon's jobs get:

1. ``fit_from_context``: the segments plugin's fit -- ``iter_interaction_rows`` over every purchase and
   refund (keyset-paged tuples), per-customer features, RFM quintiles, BG/NBD + Gamma-Gamma, tier bounds --
   and ``set_state`` of the result (what every worker then reads);
2. the growth check's ``count_customers(["purchase"])``;
3. the refit's scoring pass (``iter_customers`` + ``rescore`` + ``flush``: traits and history written) on the
   first ``--score-sample`` customers, extrapolated to all of them.

Peak memory is the process's max RSS. Run::

    .venv/bin/python bench/segments/bench_segments_store.py --customers 1000000 --purchases 10000000
    .venv/bin/python bench/segments/bench_segments_store.py --customers 100000 --purchases 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_segments import AS_OF, CURRENCIES, RATES, generate
from cxbridge_segments.pipeline import fit_from_context, flush, rescore
from cxbridge_segments.settings import SegmentsSettings
from cxbridge_segments.state import get_state

from cxbridge.store import open_store
from cxbridge.sync import StoreContext


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _ts(day: int) -> str:
    return (datetime(1970, 1, 1, 12) + timedelta(days=day)).strftime("%Y-%m-%d %H:%M:%S.%f")


def build_store(path: Path, data: dict[str, np.ndarray]) -> float:
    """Bulk-load customers and interactions into a migrated SQLite store; returns seconds taken."""
    open_store(f"sqlite:///{path}").close()  # migrations
    t0 = time.perf_counter()
    n = int(data["customers"])
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    now = _ts(int((AS_OF - datetime(1970, 1, 1, tzinfo=UTC)).days))
    db.executemany(
        "INSERT INTO customers (id, data, provenance, display_name, primary_email, erased, processing_opt_out,"
        " version, created_at, updated_at) VALUES (?, ?, '{}', ?, ?, 0, 0, 1, ?, ?)",
        ((f"c{i:07d}", json.dumps({"emails": [f"c{i}@example.com"]}), f"c{i}@example.com",
          f"c{i}@example.com", now, now) for i in range(n)),
    )
    order = np.argsort(data["day"], kind="stable")  # orders arrive in time order, not grouped by customer
    cust, day, amount = data["cust"][order], data["day"][order], data["amount"][order]
    currency, refund = data["currency"][order], data["refund"][order]
    days = {int(d): _ts(int(d)) for d in np.unique(day)}

    def rows():
        for k in range(cust.size):
            yield (f"i{k:08d}", f"c{int(cust[k]):07d}", str(k), "refund" if refund[k] else "purchase",
                   days[int(day[k])], round(abs(float(amount[k])), 2), CURRENCIES[int(currency[k])], now)

    db.executemany(
        "INSERT INTO interactions (id, customer_id, source, object_type, source_id, channel, type, occurred_at,"
        " direction, amount, currency, data, deleted, updated_at)"
        " VALUES (?, ?, 'shop', 'orders', ?, 'web', ?, ?, 'none', ?, ?, '{}', 0, ?)",
        rows(),
    )
    db.commit()
    db.execute("ANALYZE")
    db.close()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--purchases", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--score-sample", type=int, default=20_000)
    parser.add_argument("--workdir", default=None, help="keep the store here (default: a temporary directory)")
    args = parser.parse_args(argv)
    settings = SegmentsSettings(
        as_of=AS_OF, fx_rates={"USD": float(RATES[1]), "GBP": float(RATES[2])}, tiers={"metric": "clv"},
        rules={"lapsed_vip": 'tier in ("platinum", "gold") and days_since_last_purchase > 90'},
    )
    data = generate(args.customers, args.purchases)
    out: dict[str, object] = {"customers": args.customers, "purchases": args.purchases}
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        path = Path(workdir) / "segments-bench.db"
        out["store_build_s"] = round(build_store(path, data), 1)
        out["store_size_mib"] = round(path.stat().st_size / 2**20)
        del data
        rss_before = max_rss_mib()
        store = open_store(f"sqlite:///{path}")
        config = SimpleNamespace(plugins={"segments": settings}, writeback=[], sources={})
        fits, counts = [], []
        for k in range(args.repeat):
            context = StoreContext(store, config, None, now=AS_OF + timedelta(seconds=k))
            t0 = time.perf_counter()
            state = fit_from_context(context, settings)
            fits.append(time.perf_counter() - t0)
            print(f"fit {k}: {fits[-1]:.1f} s", file=sys.stderr)
            t0 = time.perf_counter()
            purchasers = context.count_customers(["purchase"])
            counts.append(time.perf_counter() - t0)
        assert get_state(StoreContext(store), settings).fitted_at == state.fitted_at  # shared through the store
        out["fit_through_store_s_median"] = round(statistics.median(fits), 1)
        out["fit_through_store_s_runs"] = [round(t, 1) for t in fits]
        out["count_purchasers_s_median"] = round(statistics.median(counts), 2)
        out["purchasers"] = purchasers
        out["peak_rss_before_fit_mib"] = round(rss_before)
        out["peak_rss_after_fit_mib"] = round(max_rss_mib())
        # The scoring pass of a refit, on a sample of customers (traits written for the first time).
        context = StoreContext(store, config, None, now=AS_OF)
        scored, t0 = 0, time.perf_counter()
        for batch in context.iter_customers(batch_size=5000):
            rescore(context, [c.id for c in batch], state=state, customers=batch)
            flush(context)
            scored += len(batch)
            if scored >= args.score_sample:
                break
        took = time.perf_counter() - t0
        out["score_pass_sample_customers"] = scored
        out["score_pass_sample_s"] = round(took, 1)
        out["score_pass_extrapolated_s"] = round(took / scored * args.customers)
        out["bgnbd"] = state.bgnbd.as_dict() if state.bgnbd else None
        out["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
        store.close()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
