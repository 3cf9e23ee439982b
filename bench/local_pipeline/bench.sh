#!/usr/bin/env bash
# Generate the sources (once) and run the local pipeline benchmark: 3 runs at 100k rows, 1 at 1M.
# Each run is a fresh process (peak RSS is per process). Results: one JSON line per run on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python}"
work="${BENCH_DIR:-/tmp/cxbridge-bench}"
mkdir -p "$work"
for n in 100000 1000000; do
  [ -f "$work/src$n.db" ] || "$py" "$here/generate.py" "$work/src$n.db" "$n"
done
for i in 1 2 3; do "$py" "$here/run.py" "$work/src100000.db" "$work/store100k.db"; done
"$py" "$here/run.py" "$work/src1000000.db" "$work/store1m.db"
# the same 100k runs without the page reader thread (see LOCAL_RESULTS.md)
for i in 1 2 3; do BENCH_PREFETCH=0 "$py" "$here/run.py" "$work/src100000.db" "$work/store100k.db"; done
"$py" "$here/calibrate.py"
