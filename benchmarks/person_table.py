"""Markdown table of ``facetwin evaluate person --json`` results (BENCHMARKS.md, issue #15).

    python benchmarks/person_table.py results/*.json

Each JSON file is the stdout of one ``facetwin evaluate person INPUT --json`` run (the last line
is the result). Prints one row per input (base vs person: overall / boundary / inner NME,
photometric error, identity spread) and the mean over rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: Path) -> dict | None:
    lines = [l for l in Path(path).read_text().splitlines() if l.strip().startswith("{")]
    return json.loads(lines[-1]) if lines else None


COLUMNS = [
    ("frames train/test", lambda r: f"{r['folds'][0]['train_frames'] if len(r['folds']) == 1 else 'k-out'}/{r['frames']['test']}"),
    ("steps", lambda r: "/".join(str(f["steps"]) for f in r["folds"])),
    ("NME base", lambda r: f"{r['base']['nme_overall']:.4f}"),
    ("NME person", lambda r: f"{r['person']['nme_overall']:.4f}"),
    ("reduction", lambda r: f"{100 * r['nme_reduction']:+.1f} %"),
    ("boundary b → p", lambda r: f"{r['base']['nme_boundary']:.4f} → {r['person']['nme_boundary']:.4f}"),
    ("inner b → p", lambda r: f"{r['base']['nme_inner']:.4f} → {r['person']['nme_inner']:.4f}"),
    ("NME person, per-frame β", lambda r: f"{r['person_per_frame_beta']['nme_overall']:.4f}"),
    ("photometric b → p", lambda r: f"{r['base']['photometric']:.4f} → {r['person']['photometric']:.4f}"),
    ("β std b → p(per-frame)", lambda r: f"{r['base']['beta_std']:.3f} → {r['person_per_frame_beta']['beta_std']:.3f}"),
    ("neutral RMS mm b → p(per-frame)", lambda r: f"{r['base']['neutral_rms_mm']:.2f} → {r['person_per_frame_beta']['neutral_rms_mm']:.2f}"),
    ("personalize s", lambda r: f"{r['personalize_seconds']:.0f}"),
]


def main(paths: list[str]) -> None:
    rows = [(Path(p).stem, r) for p in paths if (r := load(Path(p))) is not None]
    print("| input | " + " | ".join(c for c, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, r in rows:
        print(f"| {name} | " + " | ".join(f(r) for _, f in COLUMNS) + " |")
    if rows:
        mean = lambda f: sum(f(r) for _, r in rows) / len(rows)  # noqa: E731
        b, p = mean(lambda r: r["base"]["nme_overall"]), mean(lambda r: r["person"]["nme_overall"])
        red = mean(lambda r: r["nme_reduction"])
        better = sum(r["person"]["nme_overall"] < r["base"]["nme_overall"] for _, r in rows)
        sb = mean(lambda r: r["base"]["beta_std"])
        sp = mean(lambda r: r["person_per_frame_beta"]["beta_std"])
        print(f"| **mean of {len(rows)}** | | | {b:.4f} | {p:.4f} | {100 * red:+.1f} % (of the means: {100 * (1 - p / b):+.1f} %) "
              f"| lower on {better}/{len(rows)} | | | | {sb:.3f} → {sp:.3f} | | {mean(lambda r: r['personalize_seconds']):.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
