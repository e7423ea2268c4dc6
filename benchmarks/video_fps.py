"""End-to-end speed of ``facetwin reconstruct VIDEO`` on a 512² talking-head clip (issue 17 goal:
≥ 30 fps on 2 threads).

    python benchmarks/video_fps.py [--clip ../shared/data/videos/hdtf_WDA_AlexandriaOcasioCortez_000.mp4] [--frames 250]

Runs the command in child processes — default options (every frame, tracking, overlay MP4,
sequence file) and ``--no-overlay`` — on the clip's first ``--frames`` frames, with 1 torch
thread + the decode/track thread (the default: 2 threads). Reports the command's own fps (frames /
wall time of the frame loop, model loading excluded), the wall time including start-up, the CPU
seconds per frame (user + sys from ``/usr/bin/time``, start-up included), the CPU milliseconds
per frame of each stage on its own thread (decode + track in one, network + overlay + write in
the other: the slower thread bounds the fps of an idle 2-core machine) and the load average while
it ran (other jobs share these cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    data = Path(os.environ.get("FACETWIN_DATA", ROOT.parent / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", default=str(data / "videos" / "hdtf_WDA_AlexandriaOcasioCortez_000.mp4"))
    ap.add_argument("--frames", type=int, default=250)
    args = ap.parse_args()
    if not Path(args.clip).is_file():
        raise SystemExit(f"clip not found: {args.clip} (set FACETWIN_DATA)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    rows = {}
    for label, extra in (("default (overlay MP4)", []), ("--no-overlay", ["--no-overlay"]), ("--smooth", ["--smooth"])):
        out = Path(tempfile.mkdtemp(prefix="facetwin-fps-"))
        cmd = [sys.executable, "-m", "facetwin", "reconstruct", args.clip, "--out", str(out), "--max-frames", str(args.frames), "--json", *extra]
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(r.stderr[-2000:])
        res = json.loads(r.stdout.strip().splitlines()[-1])
        timing = json.loads(Path(res["summary"]).read_text())["timing"]
        cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", r.stderr).group(1)) for k in ("User", "System"))
        rows[label] = {"frames": res["frames"], "fps": res["fps"], "wall_s_with_startup": round(wall, 1),
                       "process_cpu_ms_per_frame": round(1000 * cpu / res["frames"], 1),
                       "stage_cpu_ms_per_frame": timing["cpu_ms_per_frame"], "detections": res["detections"],
                       "load_avg_1min": [round(load0, 1), round(os.getloadavg()[0], 1)]}
        print(label, rows[label], file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"clip": Path(args.clip).name, "threads": "1 torch + 1 decode/track", "runs": rows}))


if __name__ == "__main__":
    main()
