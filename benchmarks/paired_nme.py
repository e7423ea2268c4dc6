"""Paired comparison of two models' per-image NME (bootstrap confidence interval of the difference).

    facetwin evaluate landmarks DATA/eval/helen-test --per-image --json | tail -1 > a.json
    facetwin evaluate landmarks DATA/eval/helen-test --checkpoint B --per-image --json | tail -1 > b.json
    python benchmarks/paired_nme.py a.json b.json

For each point group: both means, the mean of (B − A) per image (> 0: A is better) with its 95 %
bootstrap interval (5000 resamples of the images, seed 0), and the share of images where A is
better. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def paired(a: np.ndarray, b: np.ndarray, resamples: int = 5000, seed: int = 0) -> dict:
    """a, b: (N,) per-image errors of the same images."""
    d = b - a
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (resamples, len(d)))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"a": float(a.mean()), "b": float(b.mean()), "b_minus_a": float(d.mean()),
            "ci95": [float(lo), float(hi)], "a_better_share": float((d > 0).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    args = ap.parse_args()
    runs = []
    for path in (args.a, args.b):
        try:
            r = json.load(open(path))
            runs.append({g: np.asarray(r["per_image"][g], float) for g in ("boundary", "inner", "overall")})
        except (OSError, ValueError, KeyError) as exc:
            sys.exit(f"paired_nme: {path} is not an `evaluate landmarks --per-image --json` result ({exc})")
    if len(runs[0]["overall"]) != len(runs[1]["overall"]):
        sys.exit("paired_nme: the two results cover different numbers of images")
    print(json.dumps({g: paired(runs[0][g], runs[1][g]) for g in ("boundary", "inner", "overall")}, indent=1))


if __name__ == "__main__":
    main()
