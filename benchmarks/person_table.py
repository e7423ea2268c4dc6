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


def spread(r: dict) -> bool:
    """An identity spread needs at least 2 test frames in a fold."""
    return min(f["test_frames"] for f in r["folds"]) >= 2


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
    ("β std b → p(per-frame)", lambda r: f"{r['base']['beta_std']:.3f} → {r['person_per_frame_beta']['beta_std']:.3f}" if spread(r) else "n/a"),
    ("neutral RMS mm b → p(per-frame)", lambda r: f"{r['base']['neutral_rms_mm']:.2f} → {r['person_per_frame_beta']['neutral_rms_mm']:.2f}" if spread(r) else "n/a"),
    ("personalize s", lambda r: f"{r['personalize_seconds']:.0f}"),
]


def main(paths: list[str]) -> None:
    rows = [(Path(p).stem.removeprefix("resq_").removeprefix("res2_").removeprefix("res_"), r) for p in paths if (r := load(Path(p))) is not None]
    print("| input | " + " | ".join(c for c, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, r in rows:
        print(f"| {name} | " + " | ".join(f(r) for _, f in COLUMNS) + " |")
    if rows:
        mean = lambda f: sum(f(r) for _, r in rows) / len(rows)  # noqa: E731
        b, p = mean(lambda r: r["base"]["nme_overall"]), mean(lambda r: r["person"]["nme_overall"])
        red = mean(lambda r: r["nme_reduction"])
        better = sum(r["person"]["nme_overall"] < r["base"]["nme_overall"] for _, r in rows)
        srows = [r for _, r in rows if spread(r)] or [r for _, r in rows]
        smean = lambda f: sum(f(r) for r in srows) / len(srows)  # noqa: E731
        sb = smean(lambda r: r["base"]["beta_std"])
        sp = smean(lambda r: r["person_per_frame_beta"]["beta_std"])
        bb, pb = mean(lambda r: r["base"]["nme_boundary"]), mean(lambda r: r["person"]["nme_boundary"])
        bi, pi = mean(lambda r: r["base"]["nme_inner"]), mean(lambda r: r["person"]["nme_inner"])
        pf = mean(lambda r: r["person_per_frame_beta"]["nme_overall"])
        ph_b, ph_p = mean(lambda r: r["base"]["photometric"]), mean(lambda r: r["person"]["photometric"])
        nb, np_ = smean(lambda r: r["base"]["neutral_rms_mm"]), smean(lambda r: r["person_per_frame_beta"]["neutral_rms_mm"])
        print(f"| **mean of {len(rows)}** | | | **{b:.4f}** | **{p:.4f}** | **{100 * red:+.1f} %** (lower on {better}/{len(rows)}) "
              f"| {bb:.4f} → {pb:.4f} | {bi:.4f} → {pi:.4f} | {pf:.4f} | {ph_b:.4f} → {ph_p:.4f} | {sb:.3f} → {sp:.3f} "
              f"| {nb:.2f} → {np_:.2f} | {mean(lambda r: r['personalize_seconds']):.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
