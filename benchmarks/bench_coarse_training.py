"""Coarse-training throughput (images/s) in one process and in N torchrun processes.

    python benchmarks/bench_coarse_training.py --steps 60 --procs 1 2 [--set render=false ...]

Runs the shipped ``coarse`` config on the prepared data for a few steps and reports the median
of the logged images/s after the first logging interval (start-up excluded). Prints one JSON
line per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(procs: int, steps: int, overrides: list[str], port: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"bench_coarse_{procs}p_"))
    base = ["-m", "facetwin", "train", "coarse", "--config", "coarse", "--out", str(out), "--steps", str(steps),
            "--set", "run.log_every=10", "--set", "run.image_every=0", "--set", "run.eval_every=0",
            "--set", f"run.checkpoint_every={steps * 10}"]
    for o in overrides:
        base += ["--set", o]
    if procs == 1:
        cmd = [sys.executable] + base
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port", str(port)] + base
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    ips = [r["images_per_s"] for r in records if "images_per_s" in r][1:]
    return {"processes": procs, "steps": steps, "overrides": overrides, "images_per_s": statistics.median(ips),
            "images_per_s_all": [round(x, 1) for x in ips], "data_wait_frac": records[-1].get("data_wait_frac")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--port", type=int, default=29533)
    args = ap.parse_args()
    for p in args.procs:
        print(json.dumps(run(p, args.steps, args.overrides, args.port)), flush=True)


if __name__ == "__main__":
    main()
