#!/usr/bin/env python
"""Render random identities β ~ N(0, I) and random expressions of a head model (docs figure).

    python scripts/render_random_heads.py                       # docs/images/random_heads.png
    python scripts/render_random_heads.py --head-model model.npz --out grid.png --seed 1
    python scripts/render_random_heads.py --regions docs/images/head_model_regions.png   # masks + landmarks

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


REGION_COLOURS = {
    "face": (0.93, 0.82, 0.45), "nose": (0.35, 0.6, 0.9), "ears": (0.4, 0.8, 0.4), "lips": (0.9, 0.3, 0.3),
    "eyes": (0.7, 0.45, 0.9), "eyeballs": (1.0, 1.0, 1.0), "eye_sockets": (0.25, 0.25, 0.25),
    "mouth_interior": (0.5, 0.15, 0.15), "neck": (0.65, 0.65, 0.65),
}


def render_regions(model, out: Path) -> None:
    """Template with its region masks, landmarks and silhouette candidates."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from facetwin.headmodel.build.preview import draw_mesh

    d = model.data
    v, f = d.v_template.astype(np.float64), d.faces
    lm = (v[f[d.landmark_faces]] * d.landmark_bary[..., None]).sum(1)
    region = np.tile([[0.85, 0.68, 0.58]], (len(f), 1))
    for name, colour in REGION_COLOURS.items():
        region[d.masks[name][f].all(1)] = colour
    sil = np.tile([[0.85, 0.68, 0.58]], (len(f), 1))
    sil[d.silhouette_candidates[f].all(1)] = (0.3, 0.7, 0.5)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.6))
    draw_mesh(axes[0], v, f, colours=region)
    draw_mesh(axes[1], v, f, colours=region, yaw_deg=-80)
    axes[1].set_xlim(axes[1].get_xlim()[0] - 0.05, axes[1].get_xlim()[1])
    draw_mesh(axes[2], v, f, points=lm)
    axes[2].scatter(lm[:17, 0], lm[:17, 1], s=6, c="blue", zorder=4)
    draw_mesh(axes[3], v, f, colours=sil, yaw_deg=-35)
    axes[0].set_title("region masks", fontsize=10)
    axes[2].set_title("68 landmarks (blue: zero-pose boundary 1-17)", fontsize=10)
    axes[3].set_title("silhouette candidates", fontsize=10)
    axes[1].legend(handles=[Patch(color=c, label=n) for n, c in REGION_COLOURS.items()], fontsize=7,
                   loc="upper left", bbox_to_anchor=(-0.12, 1.0), frameon=False)
    plt.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    plt.savefig(out, dpi=70)
    print(f"wrote {out}")


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
    parser.add_argument("--regions", type=Path, default=None, help="render the masks/landmarks figure here instead")
    args = parser.parse_args(argv)

    model = load_head_model(args.head_model)
    if args.regions:
        render_regions(model, args.regions)
        return 0
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
