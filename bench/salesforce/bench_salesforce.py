"""Salesforce adapter benchmark: API calls, records/s and peak memory, against the fake org.

Run::

    .venv/bin/python bench/salesforce/bench_salesforce.py            # everything (about 10 minutes)
    .venv/bin/python bench/salesforce/bench_salesforce.py rss 1000000      # one Bulk load: speed + ru_maxrss
    .venv/bin/python bench/salesforce/bench_salesforce.py memory 1000000   # the same under tracemalloc (slow)

The adapter runs with the real simple-salesforce client; the org is :class:`cxbridge_salesforce.testing.
FakeSalesforce` served in-process by ``responses`` (no network), so records/s measure the adapter's own cost
plus the fake's (CSV / JSON generation), an upper bound of the framework-side overhead, not Salesforce's speed.
Peak memory of the 1M-row Bulk load is measured in a fresh process with ``tracemalloc`` (Python heap, fake
included) and ``ru_maxrss``.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import responses
from cxbridge_salesforce.adapter import SalesforceAdapter
from cxbridge_salesforce.config import SalesforceConfig
from cxbridge_salesforce.testing import FakeSalesforce

from cxbridge.adapters import Cursor, WriteOp
from cxbridge.testing.contract import make_test_context


def _adapter(fake: FakeSalesforce, **overrides: Any) -> SalesforceAdapter:
    raw: dict[str, Any] = {
        "auth": {"flow": "refresh_token", "client_id": fake.client_id, "refresh_token": fake.refresh_token},
        "login_url": fake.login_url,
        "objects": ["Contact"],
    }
    raw.update(overrides)
    return SalesforceAdapter(SalesforceConfig.model_validate(raw), make_test_context("sfdc", now=lambda: fake.now))


def _drain(adapter: SalesforceAdapter, cursor: Cursor | None = None) -> tuple[int, Cursor]:
    rows, last = 0, cursor or Cursor()
    for page in adapter.read("contacts", last):
        rows += len(page.records)
        last = page.cursor
    return rows, last


def rest_initial(n: int) -> dict[str, Any]:
    fake = FakeSalesforce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        for i in range(n):
            fake.insert("Contact", LastName=f"L{i}", Email=f"p{i}@example.com", Phone="+4930123456")
        fake.tick(60)
        adapter = _adapter(fake, bulk_threshold=10**9)
        start = time.perf_counter()
        rows, cursor = _drain(adapter)
        elapsed = time.perf_counter() - start
        initial_calls = fake.api_used
        # incremental runs: no change, then 3,000 changes
        fake.tick(600)
        before = fake.api_used
        _drain(adapter, cursor)
        idle_calls = fake.api_used - before
        fake.tick(60)
        for record_id in list(fake.data["Contact"])[: min(3000, n)]:
            fake.update("Contact", record_id, Title="changed")
        fake.tick(600)
        before = fake.api_used
        changed_rows, _ = _drain(adapter, cursor)
        changed_calls = fake.api_used - before
    minimum = math.ceil(n / 2000)
    return {"n": n, "rows": rows, "api_calls": initial_calls, "query_pages": minimum,
            "overhead_calls": initial_calls - minimum, "records_per_s": round(rows / elapsed),
            "incremental_no_change_calls": idle_calls, "incremental_changes": min(3000, n),
            "incremental_rows": changed_rows, "incremental_calls": changed_calls}


def _generated(i: int, base: datetime = datetime(2025, 1, 1, tzinfo=UTC)) -> dict[str, Any]:
    return {"Id": f"003GEN{i:09d}AAA", "IsDeleted": False, "SystemModstamp": base + timedelta(seconds=i),
            "CreatedDate": base, "LastModifiedDate": base + timedelta(seconds=i), "FirstName": "Ada",
            "LastName": f"Lovelace{i}", "Name": f"Ada Lovelace{i}", "Email": f"ada{i}@example.com",
            "Phone": "+44 20 7946 0000", "HasOptedOutOfEmail": i % 7 == 0, "DoNotCall": False,
            "MailingCity": "London", "MailingCountry": "GB"}


def bulk_load(n: int, *, trace: bool) -> dict[str, Any]:
    fake = FakeSalesforce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        fake.add_generated("Contact", n, _generated)
        adapter = _adapter(fake, bulk_threshold=0, page_size=2000)
        if trace:
            tracemalloc.start()
        start = time.perf_counter()
        rows, cursor = _drain(adapter)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if trace else None
        if trace:
            tracemalloc.stop()
    results_sets = math.ceil(n / fake.bulk_chunk)
    return {"n": n, "rows": rows, "api_calls": fake.api_used, "results_sets": results_sets,
            "job_calls": fake.api_used - results_sets, "seconds": round(elapsed, 1),
            "records_per_s": round(rows / elapsed), "peak_traced_mb": round(peak / 2**20, 1) if peak else None,
            "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "final_cursor": cursor.modstamp.isoformat() if cursor.modstamp else None}


def writes(n: int) -> dict[str, Any]:
    fake = FakeSalesforce()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        fake.add_field("Contact", "CX_Tier__c")
        ids = [fake.insert("Contact", LastName=f"L{i}") for i in range(n)]
        adapter = _adapter(fake)
        ops = [WriteOp(key=f"k{i}", object_type="Contact", action="update", source_id=sid,
                       fields={"CX_Tier__c": "gold"}) for i, sid in enumerate(ids)]
        start = time.perf_counter()
        ok = 0
        for i in range(0, n, adapter.write_batch_size):
            ok += sum(r.ok for r in adapter.write(ops[i : i + adapter.write_batch_size]))
        elapsed = time.perf_counter() - start
    return {"n": n, "ok": ok, "api_calls": fake.api_used, "minimum": math.ceil(n / 200),
            "records_per_s": round(n / elapsed)}


def _probe(mode: str, n: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, mode, str(n)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("memory", "rss"):
        print(json.dumps(bulk_load(int(sys.argv[2]), trace=sys.argv[1] == "memory")))
        return
    report: dict[str, Any] = {}
    # Memory probes first, each in a fresh process: Linux keeps ru_maxrss across exec, so a child spawned
    # by a process that already grew would report the parent's high-water mark.
    report["bulk_rss"] = [_probe("rss", n) for n in (100_000, 1_000_000)]
    report["bulk_memory"] = [_probe("memory", n) for n in (100_000, 1_000_000)]
    report["rest"] = [rest_initial(n) for n in (1_000, 10_000, 50_000)]
    report["writes"] = writes(1_000)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
