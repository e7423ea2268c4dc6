"""How long `facetwin demo` takes after set-up: wall time, the CPU time it used (so a loaded
machine's figure can be read against an idle one's) and the load average while it ran.

    python benchmarks/demo_time.py [--repeats 2]   # prints one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "facetwin", "demo", "--out", out], check=True, capture_output=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            runs.append({"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_avg_1min": round((load0 + os.getloadavg()[0]) / 2, 1)})
    print(json.dumps({"runs": runs, "threads": os.environ.get("OMP_NUM_THREADS", "default")}))


if __name__ == "__main__":
    main()
