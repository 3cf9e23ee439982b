#!/usr/bin/env bash
# Generate the sources (once) and run the local pipeline benchmark: 5 runs at 100k rows, 2 at 1M, each a fresh
# process (peak RSS is per process), then calibrate.py (how fast the shared machine is right now).
# Results: one JSON line per run on stdout. BENCH_PAGE sets the page size (default 1000).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python}"
work="${BENCH_DIR:-/tmp/cxbridge-bench}"
mkdir -p "$work"
for n in 100000 1000000; do
  [ -f "$work/src$n.db" ] || "$py" "$here/generate.py" "$work/src$n.db" "$n"
done
for i in 1 2 3 4 5; do "$py" "$here/run.py" "$work/src100000.db" "$work/store100k.db"; done
for i in 1 2; do "$py" "$here/run.py" "$work/src1000000.db" "$work/store1m.db"; done
"$py" "$here/calibrate.py"
