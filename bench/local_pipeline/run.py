"""Run the local pipeline once: SQL source (local-sql adapter) -> mapping -> identity -> SQLite store.

Prints one JSON line: records, seconds, records/s (wall and per CPU-second), the CPU time spent reading the
source (``source_read_cpu_s``: the adapter's generator -- the source database's own queries and its rows
turned into records) and the framework's rate without it (``framework_records_per_cpu_s``: mapping, hashing,
identity, golden records, store writes and commits -- what ARCHITECTURE §8 budgets), peak RSS (MiB) of this
process. Run in a fresh process per measurement (peak RSS is per process).

Usage: ``python run.py SOURCE.db STORE.db [--profile OUT.txt]`` (``BENCH_PREFETCH=0``: no page reader thread for
adapters that use one; ``BENCH_PAGE=N``: page size, default 1000)
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def bench_config(source: Path, store_path: Path) -> dict[str, Any]:
    """The benchmark's configuration: one local-sql customer stream into a SQLite store."""
    return {
        "store": {"url": f"sqlite:///{store_path}"},
        "identity": {"default_region": "DE", "cross_ids": ["erp_no"]},
        "sources": {"crm": {"adapter": "local-sql", "connection": {
            "url": f"sqlite:///{source}",
            "page_size": int(os.environ.get("BENCH_PAGE", 1000)),
            "objects": {"customers": {
                "table": "customers", "entity": "customer", "change_column": "updated_at",
                "related": {
                    "emails": {"table": "contact", "fk": "party_id", "value": "value", "where": {"kind": "email"}},
                    "phones": {"table": "contact", "fk": "party_id", "value": "value", "where": {"kind": "phone"}},
                },
                "mapping": {"first_name": "first_name", "last_name": "last_name", "emails": "emails",
                            "phones": "phones", "external_ids.erp_no": "erp_no",
                            "demographics.country": "country"},
            }},
        }}},
    }


def open_pipeline(source: Path, store_path: Path) -> tuple[Any, Any, Any, Any]:
    """(config, plugin manager, a fresh store, the source's adapter) for the benchmark's configuration."""
    from cxbridge.config import config_from_dict
    from cxbridge.plugins import get_plugin_manager
    from cxbridge.sources import build_adapter
    from cxbridge.store import open_store

    store_path.unlink(missing_ok=True)
    # The pipeline only: the local adapter's distribution, no other installed plugins (they have their own
    # benchmarks); the built-in defaults (identity resolution) are always registered.
    os.environ["CXBRIDGE_LOAD_PLUGINS"] = "cxbridge-local"
    pm = get_plugin_manager()
    config = config_from_dict(bench_config(source, store_path), pm=pm)
    store = open_store(config.store.url)
    return config, pm, store, build_adapter(config, "crm", pm=pm, store=store)


def main() -> None:
    source, store_path = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    profile = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--profile" else None
    from cxbridge.sync import SyncEngine

    config, pm, store, adapter = open_pipeline(source, store_path)
    # CPU time spent reading the source (the adapter's generator: the source database's queries and the rows
    # turned into records), to report the framework's own share (ARCHITECTURE §8: mapping, identity, store)
    reading = [0.0]
    read = adapter.read

    def timed_read(*args: Any, **kwargs: Any) -> Iterator[Any]:
        pages = read(*args, **kwargs)
        while True:
            started = time.process_time()
            try:
                page = next(pages)
            except StopIteration:
                reading[0] += time.process_time() - started
                return
            reading[0] += time.process_time() - started
            yield page

    adapter.read = timed_read  # type: ignore[method-assign]
    # BENCH_PREFETCH=0: without the page reader thread (it overlaps network waits; a local source has none)
    prefetch = os.environ.get("BENCH_PREFETCH", "1") != "0"
    engine = SyncEngine(store, config, pm, {"crm": adapter}, prefetch=prefetch)
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    (run,) = engine.run()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if profiler:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with store.connect() as conn:
        customers = conn.exec_driver_sql("SELECT count(*) FROM customers").scalar_one()
        links = conn.exec_driver_sql("SELECT count(*) FROM source_links").scalar_one()
    print(json.dumps({"status": run.status, "error": run.error, "records": run.records_read, "pages": run.pages,
                      "seconds": round(seconds, 2), "records_per_s": round(run.records_read / seconds),
                      "cpu_seconds": round(cpu, 2), "records_per_cpu_s": round(run.records_read / cpu),
                      "source_read_cpu_s": round(reading[0], 2),
                      "framework_records_per_cpu_s": round(run.records_read / (cpu - reading[0])),
                      "peak_rss_mib": round(peak_mib, 1), "prefetch": prefetch, "golden_customers": customers,
                      "links": links}))


if __name__ == "__main__":
    main()
