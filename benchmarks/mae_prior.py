"""What vit-pretrain (masked-autoencoder pre-training) brings the coarse encoder, at an equal compute budget.

    python benchmarks/mae_prior.py --mae-steps 1500 --coarse-steps 1000 --data prepared --out runs/mae_prior

Three runs of the shipped configs on the prepared crops (each under torchrun with ``--procs``
processes × 1 thread, each resumable: a finished run is reused):

1. ``facetwin train vit-pretrain`` for ``--mae-steps`` (wall time T_mae);
2. ``facetwin train coarse`` for ``--coarse-steps`` starting from the MAE encoder (T_coarse);
3. ``facetwin train coarse`` from scratch for ``--coarse-steps`` × (T_mae + T_coarse) / T_coarse
   steps, i.e. the same wall time as 1 + 2.

Both coarse models are then evaluated on HELEN-test (``facetwin evaluate landmarks``); the script
prints one JSON object with the wall times, steps and NME of both arms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _launch(args: list[str], procs: int, port: int, log: Path) -> float:
    """Run ``python -m facetwin ARGS`` (under torchrun when procs > 1); returns wall seconds."""
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
               "--master_port", str(port), "-m", "facetwin"] + args
    else:
        cmd = [sys.executable, "-m", "facetwin"] + args
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"mae_prior: {' '.join(args[:2])} failed (exit {r.returncode}); see {log}")
    return time.perf_counter() - t0


def _stage(name: str, out: Path, args: list[str], procs: int, port: int, times: dict) -> float:
    """One training run, skipped when ``times.json`` holds its wall time (it finished)."""
    run_dir = out / name
    if name not in times:  # not finished (an interrupted run resumes; only the last attempt is timed)
        times[name] = _launch(args + ["--out", str(run_dir), "--resume", "auto", "--json"], procs, port, out / f"{name}.log")
        (out / "times.json").write_text(json.dumps(times, indent=1))
    return times[name]


def _evaluate(folder: Path, checkpoint: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "facetwin", "evaluate", "landmarks", str(folder), "--checkpoint",
                        str(checkpoint), "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"mae_prior: evaluation of {checkpoint} failed: {r.stderr.strip().splitlines()[-1:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return {k: res[k] for k in ("nme_boundary", "nme_inner", "nme_overall", "auc_0.08")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mae-steps", type=int, default=1500)
    ap.add_argument("--coarse-steps", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/mae_prior"))
    ap.add_argument("--eval", type=Path, default=Path(os.environ.get("FACETWIN_DATA", "../shared/data")) / "eval" / "helen-test")
    ap.add_argument("--data", default="prepared", help="`facetwin prepare` output (data.root of both stages)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra coarse-config overrides")
    ap.add_argument("--port", type=int, default=29541)
    a = ap.parse_args()
    if not a.eval.is_dir():
        sys.exit(f"mae_prior: no evaluation folder {a.eval} (set FACETWIN_DATA or --eval)")
    a.out.mkdir(parents=True, exist_ok=True)
    times_file = a.out / "times.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    sets = [x for o in a.overrides for x in ("--set", o)]
    data = ["--set", f"data.root={a.data}"]
    coarse = ["train", "coarse", "--config", "coarse", "--set", "run.image_every=0"] + data + sets

    t_mae = _stage("mae", a.out, ["train", "vit-pretrain", "--config", "vit-pretrain", "--steps", str(a.mae_steps)] + data,
                   a.procs, a.port, times)
    vit = a.out / "mae" / "export" / "vit_pretrain.safetensors"
    t_ft = _stage("coarse_from_mae", a.out, coarse + ["--steps", str(a.coarse_steps), "--set", f"model.pretrained={vit}"],
                  a.procs, a.port, times)
    scratch_steps = round(a.coarse_steps * (t_mae + t_ft) / t_ft)
    _stage("coarse_scratch", a.out, coarse + ["--steps", str(scratch_steps)],
           a.procs, a.port, times)
    result = {
        "mae_steps": a.mae_steps, "coarse_steps": a.coarse_steps, "scratch_steps": scratch_steps, "procs": a.procs,
        "minutes": {k: round(v / 60, 1) for k, v in times.items()},
        "mae_then_coarse": _evaluate(a.eval, a.out / "coarse_from_mae"),
        "scratch_equal_time": _evaluate(a.eval, a.out / "coarse_scratch"),
    }
    (a.out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
