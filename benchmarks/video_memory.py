"""Peak memory of ``facetwin reconstruct VIDEO`` vs video length (issue 13: flat in the length).

    python benchmarks/video_memory.py [--work /tmp/facetwin-video-memory] [--fps 2] [--long 120]

Makes two 720p clips (1280×720, 25 fps) by concatenating ../shared/data/videos clips (each
letterboxed onto the 720p canvas) with OpenCV: 10 s and ``--long`` s (default 2 minutes). They are
written under ``--work`` (outside the repository; never committed). Each runs through
``facetwin reconstruct`` in its own child process under ``/usr/bin/time -v`` (or, where that is
missing, ``resource.getrusage(RUSAGE_CHILDREN)`` in a wrapper process); the peak resident set
sizes and their ratio are printed as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
W, H, FPS = 1280, 720, 25.0


def data_dir() -> Path:
    return Path(os.environ.get("FACETWIN_DATA", ROOT.parent / "shared" / "data"))


def letterbox(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    r = min(W / w, H / h)
    small = cv2.resize(frame, (round(w * r), round(h * r)), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    out = np.zeros((H, W, 3), np.uint8)
    y, x = (H - small.shape[0]) // 2, (W - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def make_clip(path: Path, seconds: float, sources: list[Path]) -> int:
    """Concatenate ``sources`` (cycling) into a ``seconds`` long 720p clip; returns its frames."""
    need = int(round(seconds * FPS))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    n = 0
    while n < need:
        for src in sources:
            cap = cv2.VideoCapture(str(src))
            while n < need:
                ok, frame = cap.read()
                if not ok:
                    break
                writer.write(letterbox(frame))
                n += 1
            cap.release()
            if n >= need:
                break
    writer.release()
    return n


def peak_rss_mb(cmd: list[str], env: dict) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of ``cmd`` run as a child process."""
    import time

    t = time.perf_counter()
    if shutil.which("time") or Path("/usr/bin/time").is_file():
        r = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
        kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
        return kb / 1024.0, time.perf_counter() - t
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return int(r.stdout.strip().splitlines()[-1]) / 1024.0, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/facetwin-video-memory", help="folder for the made clips and outputs")
    ap.add_argument("--fps", default="2", help="reconstruct's --fps for both runs ('all' = every frame)")
    ap.add_argument("--short", type=float, default=10.0)
    ap.add_argument("--long", type=float, default=120.0)
    args = ap.parse_args()
    videos = sorted((data_dir() / "videos").glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no clips in {data_dir() / 'videos'} (set FACETWIN_DATA)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    result = {"clips": {}, "fps_option": args.fps}
    for label, seconds in (("short", args.short), ("long", args.long)):
        clip = work / f"clip_{int(seconds)}s_720p.mp4"
        if not clip.is_file():
            make_clip(clip, seconds, videos)
        out = work / f"out_{label}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "facetwin", "reconstruct", str(clip), "--out", str(out), "--json"]
        if args.fps != "all":
            cmd += ["--fps", args.fps]
        rss, wall = peak_rss_mb(cmd, env)
        summary = json.loads((out / f"{clip.stem}_sequence.json").read_text())
        result["clips"][label] = {"seconds": seconds, "frames_in_clip": summary["video"]["frames_declared"],
                                  "frames_reconstructed": summary["frames"], "peak_rss_mb": round(rss, 1),
                                  "wall_s": round(wall, 1)}
        print(f"{label}: {result['clips'][label]}", file=sys.stderr)
    result["ratio_long_to_short"] = round(result["clips"]["long"]["peak_rss_mb"] / result["clips"]["short"]["peak_rss_mb"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
