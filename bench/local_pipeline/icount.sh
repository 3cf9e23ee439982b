#!/usr/bin/env bash
# CPU instructions per record of the local pipeline, counted by valgrind (cachegrind, no cache simulation):
# a run over N rows minus a run over 100 rows (startup, imports, migrations), divided by N - 100. Unlike CPU
# time on the shared VM (+-20 % within minutes) the count repeats to within ~0.1 %, so two versions can be
# compared one after the other; it does not see cache misses or system calls (the store's commits), so confirm
# a change with compare.sh. Needs valgrind (Debian package). ~90 s for the default N = 10,000.
#   PYTHON=.venv/bin/python bench/local_pipeline/icount.sh [N]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python}"
n="${1:-10000}"
work="${BENCH_DIR:-/tmp/cxbridge-bench}"
mkdir -p "$work"
for rows in 100 "$n"; do
  [ -f "$work/src$rows.db" ] || "$py" "$here/generate.py" "$work/src$rows.db" "$rows"
done
count() {
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    "$py" "$here/run.py" "$work/src$1.db" "$work/icount-store.db" 2>&1 >/dev/null \
    | sed -n 's/.*I *refs: *//p' | tr -d ,
}
big="$(count "$n")"
small="$(count 100)"
echo "{\"rows\": $n, \"instructions\": $big, \"startup_instructions\": $small, \"instructions_per_record\": $(( (big - small) / (n - 100) ))}"
