"""A bound, not a product path: the least work a fused initial-load loop could do for the benchmark's records.

Same source, same adapter, same mapping, the same rows written with the same bulk writes, the same three
lookups per page (content hashes, current links, key owners) and one commit per page -- but one loop per page
and nothing else: no hooks, no erasure or echo checks, no old patches, no cursor or run rows, no decision pass
(a record whose key a stored record has is skipped; keys shared within a page are not checked), no result
objects. Its framework rate against ``run.py``'s, measured alternately, bounds what restructuring the Python
around the same storage can save (bench/LOCAL_RESULTS.md, fourth pass).

Usage: ``python minimal_loop.py SOURCE.db STORE.db`` -- prints one JSON line like ``run.py``'s.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import open_pipeline


def main() -> None:
    source, store_path = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    from cxbridge.adapters import Cursor
    from cxbridge.golden import assemble_single
    from cxbridge.identity.resolver import (
        _CUSTOMER_COLS,
        _FIRST,
        _KEY_COLS,
        _KEY_OWNERS_SQL,
        _LINK_COLS,
        _customer_row,
        _Ids,
    )
    from cxbridge.store import schema as s
    from cxbridge.sync import SyncEngine
    from cxbridge.sync.bulk import bulk_upsert_values, select_in, sqlite_in_rows
    from cxbridge.sync.gctune import relaxed_gc
    from cxbridge.sync.page import _EMPTY, _MIRROR_COLS, _MIRROR_UPDATE, _hash_and_blob

    config, pm, store, adapter = open_pipeline(source, store_path)
    engine = SyncEngine(store, config, pm, {"crm": adapter})
    (stream,) = [st for st in adapter.streams() if st.name == "customers"]
    mapping, keys_of = engine.mapping_for("crm", stream), engine.resolver.keys
    where = {"source": "crm", "object_type": "customers"}
    pk = ["source", "object_type", "source_id"]
    records = 0
    read_cpu = 0.0
    with relaxed_gc():  # as the engine does during runs
        start = time.process_time()
        pages = adapter.read("customers", Cursor())
        while True:
            before = time.process_time()
            page = next(pages, None)
            read_cpu += time.process_time() - before
            if page is None:
                break
            now = datetime.now(UTC)
            with store.begin() as conn:
                ids = [r.source_id for r in page.records]
                select_in(conn, s.source_records, ("source_id", "content_hash"), where, "source_id", ids)
                select_in(conn, s.source_links, ("source_id", "customer_id"), where, "source_id", ids)
                mirror, items, every_key = [], [], []
                for r in page.records:
                    patch = mapping(r.fields)
                    digest, blob = _hash_and_blob(r)
                    mirror.append(["crm", "customers", r.source_id, r.modstamp, digest, blob, _EMPTY, patch, False,
                                   None, now, now, "run_bound"])
                    keys = keys_of(patch)
                    every_key.extend(keys)
                    items.append((r, patch, keys))
                owned = {key for key, _cid in sqlite_in_rows(conn, _KEY_OWNERS_SQL, (), sorted(set(every_key)))}
                new_id = _Ids("cus")
                links, key_rows, customers = [], [], []
                for r, patch, keys in items:
                    if any(k in owned for k in keys):
                        continue
                    cid, sid = new_id(), r.source_id
                    links.append(["crm", "customers", sid, "customer", cid, None, "new", now])
                    key_rows.extend([k, "crm", "customers", sid] for k in keys)
                    data, prov = assemble_single("crm", "customers", sid, r.modstamp, patch)
                    customers.append(_customer_row(cid, data, prov, None, now))
                bulk_upsert_values(conn, s.source_records, _MIRROR_COLS, mirror, pk, _MIRROR_UPDATE)
                bulk_upsert_values(conn, s.source_links, _LINK_COLS, links, pk)
                key_rows.sort(key=_FIRST)
                bulk_upsert_values(conn, s.identity_keys, _KEY_COLS, key_rows, _KEY_COLS, [])
                bulk_upsert_values(conn, s.customers, _CUSTOMER_COLS, customers, ["id"])
            records += len(page.records)
        cpu = time.process_time() - start
    print(json.dumps({"records": records, "cpu_seconds": round(cpu, 2), "source_read_cpu_s": round(read_cpu, 2),
                      "framework_records_per_cpu_s": round(records / (cpu - read_cpu)),
                      "framework_per_read": round((cpu - read_cpu) / read_cpu, 2)}))


if __name__ == "__main__":
    main()
