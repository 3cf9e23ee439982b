"""How long `cxbridge --help` takes with every installed plugin (budget: < 0.5 s, issue 2).

Runs the installed console script N times in fresh processes and prints the median and range of wall times,
plus the import time of each first-party plugin module (``python -X importtime``), as one JSON line.

    .venv/bin/python bench/startup/bench_startup.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PLUGINS = ["cxbridge_local.plugin", "cxbridge_hubspot.plugin", "cxbridge_salesforce.plugin",
           "cxbridge_segments.plugin"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    exe = shutil.which("cxbridge", path=str(Path(sys.executable).parent)) or "cxbridge"
    walls = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
    imports = {}
    for module in PLUGINS:
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                             capture_output=True, text=True, env={**os.environ}).stderr
        match = [line for line in out.splitlines() if line.rstrip().endswith(f"| {module}")]
        if match:
            imports[module] = int(re.split(r"\|", match[-1])[1]) / 1e6
    print(json.dumps({
        "runs": args.runs,
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "max_s": round(max(walls), 3),
        "plugin_import_s": {k: round(v, 4) for k, v in imports.items()},
        "load_average": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
