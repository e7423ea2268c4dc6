#!/usr/bin/env python
"""Render random identities β ~ N(0, I) and random expressions of a head model (docs figure).

    python scripts/render_random_heads.py                       # docs/images/random_heads.png
    python scripts/render_random_heads.py --head-model model.npz --out grid.png --seed 1

Top rows: neutral random identities (front and three-quarter views). Bottom rows: random
identities with random expressions (one clearly visible ARKit unit or pair at 0.6-1 plus two
random units at 0.3-0.8, names printed below).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# One clearly visible unit (or symmetric pair) per head, plus random others.
MAJOR = (("jawOpen",), ("mouthSmileLeft", "mouthSmileRight"), ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
         ("eyeBlinkLeft", "eyeBlinkRight"), ("mouthPucker",), ("mouthFunnel", "jawOpen"), ("cheekPuff",),
         ("browDownLeft", "browDownRight", "noseSneerLeft", "noseSneerRight"))


def random_expressions(rng: np.random.Generator, n: int, names: tuple[str, ...], extra: int = 2) -> np.ndarray:
    psi = np.zeros((n, len(names)))
    for i in range(n):
        for name in MAJOR[i % len(MAJOR)]:
            psi[i, names.index(name)] = rng.uniform(0.6, 1.0)
        on = rng.choice(len(names), extra, replace=False)
        psi[i, on] = np.maximum(psi[i, on], rng.uniform(0.3, 0.8, extra))
    return psi


def main(argv=None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from facetwin.headmodel import load_head_model
    from facetwin.headmodel.build.preview import draw_mesh

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head-model", default="open")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "random_heads.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cols", type=int, default=6)
    args = parser.parse_args(argv)

    model = load_head_model(args.head_model)
    rng = np.random.default_rng(args.seed)
    cols = args.cols
    n = 2 * cols
    beta = torch.as_tensor(rng.standard_normal((n, model.n_shape)), dtype=torch.float32)
    psi = torch.zeros(n, model.n_expr)
    psi[cols:] = torch.as_tensor(random_expressions(rng, cols, tuple(model.data.expression_names)), dtype=torch.float32)
    with torch.no_grad():
        verts = model(shape=beta, expression=psi).vertices.numpy()
    faces = model.faces.numpy()
    hide = np.zeros(len(faces), bool)
    fig, axes = plt.subplots(4, cols, figsize=(2.2 * cols, 2.4 * 4))
    for i in range(n):
        row = 0 if i < cols else 2
        c = i % cols
        draw_mesh(axes[row, c], verts[i], faces, hide=hide)
        draw_mesh(axes[row + 1, c], verts[i], faces, yaw_deg=-40, hide=hide)
    axes[0, 0].set_title("β ~ N(0, I), neutral", loc="left", fontsize=10)
    axes[2, 0].set_title("β ~ N(0, I), random expressions ψ ∈ [0, 1]", loc="left", fontsize=10)
    for i in range(cols):
        on = np.flatnonzero(psi[cols + i].numpy() > 0)
        axes[3, i].text(0.5, -0.02, "\n".join(model.data.expression_names[j] for j in on), fontsize=6,
                        ha="center", va="top", transform=axes[3, i].transAxes)
    plt.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plt.savefig(args.out, dpi=70)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
