"""The full protocol of issue #15 over the shared data, resumable across sessions.

    python benchmarks/person_suite.py --out ../runs/person_suite [--minutes 2.5] [--max-steps N] [--only NAME ...] [--limit N]

Runs ``facetwin evaluate person INPUT --json`` (one process per input, 1 thread) on

* :data:`CLIPS` — 31 clips of ``videos/`` of 31 different people (``liveportrait_d6``, the
  30-second clip, among them), 70 % / 30 % split in time;
* every folder of ``multi-image/`` (leave-k-out with the default k, a quarter of the photos, all folds);
* the :data:`N_IDENTITIES` people of ``identities/eval`` with the most photos (ties by name),
  personalised on all but two photos and tested on those two (``--leave-out 2 --folds 1``),

and writes one JSON per input to ``OUT/json/<kind>__<name>.json`` — the result, or
``{"error": ...}`` (the command's one-line message) for an input the protocol refuses. An input
whose JSON exists is skipped, so an interrupted suite continues where it stopped (``--retry-failed``
runs the failed ones again). Then ``OUT/table.md``: :func:`person_table.tables` over every JSON.
Work folders (prepared crops, runs, person files) stay in ``OUT/work/<name>``, test-frame
pictures in ``OUT/pictures`` (meshes on grey: no pixel of the research data).

Choice of the clips: the 50 clips show about 45 people. Known repeats (``dreamtalk_W009_*``,
``eamm_*``, ``styletalk_furious_*``) keep one clip each; the others were checked with dlib's face
descriptor (the mean over 3 frames per clip): every pair of the chosen clips is farther apart
than 0.5 (the closest pair 0.54; dlib's same-person threshold 0.6 is loose on 256² frames, the
three known repeats measure 0.24–0.46). Clips shorter than 3 s (the LRS3 ones, 1–2 s: under 12
frames at 5 per second) are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from person_table import load, tables  # noqa: E402

CLIPS = [
    "liveportrait_d6", "metrical_duda", "hdtf_WDA_AlexandriaOcasioCortez_000", "smirk_skarsgard", "styletalk_reagan_clip1",
    "dagan_driving", "dpe_d", "dreamtalk_W009_front_angry_level3_001", "eamm_contempt", "followyouremoji_temple_video",
    "fomm_08", "liveportrait_d0", "liveportrait_d10", "liveportrait_d18", "liveportrait_d3",
    "mead_M003_level_1_disgusted_015", "mead_M026_level_3_disgusted_018", "mead_W036_level_3_happy_007", "metrical_wojtek",
    "retalking_face_2", "retalking_face_5", "skyreels_driving_video_1", "skyreels_driving_video_2",
    "skyreels_driving_video_4", "skyreels_driving_video_5", "styletalk_KristiNoem", "styletalk_furious_talk1_clip2",
    "styletalk_happyenglish_clip2", "styletalk_sad_emotion_clip1", "styletalk_sadfather_clip1", "styletalk_vscodehappy_clip1",
]
N_IDENTITIES = 20


def data_root() -> Path:
    from facetwin.paths import shared_data_dir

    return shared_data_dir()


def identity_people(root: Path, n: int = N_IDENTITIES) -> list[Path]:
    """The ``n`` people of ``identities/eval`` with the most photos (ties by name)."""
    folders = [d for d in (root / "identities" / "eval").iterdir() if d.is_dir()]
    count = {d: sum(1 for f in d.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png")) for d in folders}
    return sorted(folders, key=lambda d: (-count[d], d.name))[:n]


def inputs(root: Path) -> list[dict]:
    """Every input of the suite: name, kind, path, extra arguments of ``evaluate person``."""
    out = [{"name": f"video__{c}", "path": root / "videos" / f"{c}.mp4", "args": []} for c in CLIPS]
    out += [{"name": f"multi__{d.name}", "path": d, "args": []}  # leave-k-out, k = a quarter of the photos
            for d in sorted((root / "multi-image").iterdir()) if d.is_dir()]
    out += [{"name": f"identity__{d.name}", "path": d, "args": ["--leave-out", "2", "--folds", "1"]} for d in identity_people(root)]
    return out


def run_one(item: dict, out: Path, minutes: float, python: str = sys.executable, max_steps: int = 0) -> dict:
    """``facetwin evaluate person`` on one input; its JSON (result or one-line error) written atomically."""
    from facetwin.outputs import ensure_dir, write_json

    name = item["name"]
    work = ensure_dir(out / "work") / name
    pictures = ensure_dir(out / "pictures")
    cmd = [python, "-m", "facetwin", "evaluate", "person", str(item["path"]), *item["args"], "--minutes", str(minutes),
           "--threads", "1", "--work", str(work), "--no-progress", "--json",
           "--picture", str(pictures / f"{name}.png"), "--priors-picture", str(pictures / f"{name}_priors.png"),
           "--picture-background", "none"] + (["--max-steps", str(max_steps)] if max_steps else [])
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [l for l in r.stdout.splitlines() if l.strip().startswith("{")]
    if r.returncode == 0 and lines:
        result = json.loads(lines[-1])
    else:
        err = [l for l in r.stderr.strip().splitlines() if l.strip()]
        result = {"input": str(item["path"]), "error": err[-1] if err else f"exit code {r.returncode}", "returncode": r.returncode}
    result.update(name=name, wall_seconds=round(time.time() - t0, 1), command=" ".join(cmd[1:]))
    write_json(out / "json" / f"{name}.json", result)
    return result


def pending(items: list[dict], out: Path, retry_failed: bool = False) -> list[dict]:
    """The inputs without a JSON in ``out/json`` (with ``retry_failed``: also those whose JSON is an error)."""
    todo = []
    for it in items:
        path = out / "json" / f"{it['name']}.json"
        if path.exists():
            old = load(path) or {}
            if not ("error" in old and retry_failed):
                continue
        todo.append(it)
    return todo


def main(argv: list[str] | None = None, runner=run_one) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="results folder (json/, work/, pictures/, table.md)")
    ap.add_argument("--minutes", type=float, default=2.5, help="training budget per person model (default 2.5)")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="also stop each person model after N steps (0 = the budget only); with a large --minutes the figures "
                         "no longer depend on how busy the CPU is")
    ap.add_argument("--only", nargs="*", default=None, help="run only inputs whose name contains one of these")
    ap.add_argument("--limit", type=int, default=0, help="run at most N inputs not yet measured (0 = all)")
    ap.add_argument("--retry-failed", action="store_true", help="run again the inputs whose JSON holds an error")
    ap.add_argument("--list", action="store_true", help="print the inputs and exit")
    args = ap.parse_args(argv)

    from facetwin.outputs import ensure_dir, write_text

    root = data_root()
    if not root.is_dir():
        print(f"person_suite: research data not found at {root} (set FACETWIN_DATA)", file=sys.stderr)
        return 2
    items = inputs(root)
    if args.only:
        items = [it for it in items if any(s in it["name"] for s in args.only)]
    if args.list:
        for it in items:
            print(it["name"], it["path"], " ".join(it["args"]))
        return 0
    ensure_dir(args.out / "json")
    todo = pending(items, args.out, args.retry_failed)
    if args.limit:
        todo = todo[:args.limit]
    print(f"person_suite: {len(items) - len(todo)} of {len(items)} inputs already measured, running {len(todo)}", file=sys.stderr)
    for k, it in enumerate(todo):
        r = runner(it, args.out, args.minutes, max_steps=args.max_steps)
        what = r.get("error") or f"NME {r['base']['nme_overall']:.4f} -> {r['person']['nme_overall']:.4f} ({100 * r['nme_reduction']:+.1f} %)"
        print(f"[{k + 1}/{len(todo)}] {it['name']}: {what} ({r['wall_seconds']:.0f} s)", file=sys.stderr, flush=True)
    named = [(p.stem, load(p)) for p in sorted((args.out / "json").glob("*.json"))]
    named = [(n, r) for n, r in named if r is not None]
    text = tables(named)
    write_text(args.out / "table.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
