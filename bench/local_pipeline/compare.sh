#!/usr/bin/env bash
# Compare two commits on the local pipeline, run pair by pair (A then B, N times) so both see the same
# machine state; prints every run and the per-pair speed-up. The shared VM's speed changes by +-20 % within
# minutes, so ratios of neighbouring runs say more than absolute figures.
#   PYTHON=.venv/bin/python bench/local_pipeline/compare.sh REV_A REV_B [N] [SOURCE.db]
# Each commit is checked out into a temporary worktree and imported from there (PYTHONPATH), so both use the
# same virtual environment; the source database comes from generate.py (default: the 100k one of bench.sh).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-python}"
a="$1"; b="$2"; n="${3:-3}"
src="${4:-${BENCH_DIR:-/tmp/cxbridge-bench}/src100000.db}"
tmp="$(mktemp -d)"
trap 'git -C "$repo" worktree remove --force "$tmp/a" >/dev/null 2>&1 || true;
      git -C "$repo" worktree remove --force "$tmp/b" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$repo" worktree add -q --detach "$tmp/a" "$a"
git -C "$repo" worktree add -q --detach "$tmp/b" "$b"
for i in $(seq 1 "$n"); do
  for side in a b; do
    dir="$tmp/$side"
    printf '%s ' "$side"
    PYTHONPATH="$dir:$dir/adapters/local" "$py" "$dir/bench/local_pipeline/run.py" "$src" "$tmp/store.db"
  done
done | tee "$tmp/runs.txt"
"$py" - "$tmp/runs.txt" <<'PY'
import json, statistics, sys
runs = [(line[0], json.loads(line[2:])) for line in open(sys.argv[1])]
pairs = [(runs[i][1], runs[i + 1][1]) for i in range(0, len(runs) - 1, 2)]
ratios = [b["records_per_cpu_s"] / a["records_per_cpu_s"] for a, b in pairs]
print(f"speed-up per CPU-second, per pair: {[round(r, 2) for r in ratios]} (median {statistics.median(ratios):.2f})")
PY
