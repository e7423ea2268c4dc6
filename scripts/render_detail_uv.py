#!/usr/bin/env python
"""Picture and figures of the open head model's detail UV layout (docs/head-model.md, BENCHMARKS.md).

    python scripts/render_detail_uv.py                     # docs/images/detail_uv_layout.png + figures on stdout
    python scripts/render_detail_uv.py --json figures.json --out layout.png

Panels: the layout (face skin vs the margin that carries the seam), area distortion
(log₂ of UV area share / surface area share per triangle), angle distortion (σ₁/σ₂), the chart
on the head, the tension map T_UV of a brow raise, and a synthetic known-answer render whose
forehead lines are placed by that tension (facetwin.evaluation.synthetic_details).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "docs/images/detail_uv_layout.png")
    ap.add_argument("--json", type=Path, default=None, help="also write the coverage/stretch figures here")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from matplotlib.collections import PolyCollection

    from facetwin.evaluation.synthetic_details import SyntheticDetails
    from facetwin.headmodel import load_head_model
    from facetwin.headmodel.build import detail_uv as du
    from facetwin.headmodel.build.preview import draw_mesh
    from facetwin.outputs import atomic_write, write_json

    torch.set_num_threads(2)
    model = load_head_model("open")
    data = model.data
    chart = (data.detail_uv_faces >= 0).all(1)
    region = data.detail_face_region
    layout = du.DetailUV(data.detail_uv_coords, data.detail_uv_faces, region, chart, np.zeros(0, np.int64))
    figures = du.summary(data.v_template, data.faces, layout)
    figures["margin_triangles"] = int((chart & ~region).sum())
    print(json.dumps(figures, indent=2))
    if args.json:
        write_json(args.json, figures)

    st = du.stretch(data.v_template, data.faces[chart], data.detail_uv_coords, data.detail_uv_faces[chart])
    polys = data.detail_uv_coords[data.detail_uv_faces[chart]]
    reg = region[chart]
    fig, ax = plt.subplots(2, 3, figsize=(15, 10))

    def uv_axes(a, title):
        a.set_xlim(0, 1)
        a.set_ylim(0, 1)
        a.set_aspect("equal")
        a.set_title(title, fontsize=10)
        a.set_xticks([0, 0.5, 1])
        a.set_yticks([0, 0.5, 1])

    col = np.where(reg[:, None], [[0.93, 0.72, 0.55]], [[0.55, 0.6, 0.95]])
    ax[0, 0].add_collection(PolyCollection(polys, facecolors=col, edgecolors="k", linewidths=0.15))
    uv_axes(ax[0, 0], f"detail UV layout: face skin {100 * figures['face_coverage']:.1f} % of the map\n"
                      f"(blue: margin ring, where the seam lies)")
    logr = np.log2(st["area_ratio"])
    pc = PolyCollection(polys, array=logr, cmap="coolwarm", edgecolors="none")
    pc.set_clim(-1.5, 1.5)
    ax[0, 1].add_collection(pc)
    fig.colorbar(pc, ax=ax[0, 1], fraction=0.046, label="log2 area ratio")
    uv_axes(ax[0, 1], f"area distortion (face: 5–95 % {figures['area_ratio_p5']:.2f}–{figures['area_ratio_p95']:.2f}×)")
    pc = PolyCollection(polys, array=st["conformal"], cmap="viridis", edgecolors="none")
    pc.set_clim(1.0, 1.5)
    ax[0, 2].add_collection(pc)
    fig.colorbar(pc, ax=ax[0, 2], fraction=0.046, label="σ1/σ2")
    uv_axes(ax[0, 2], f"angle distortion (face: mean {figures['conformal_mean']:.3f}, 95 % {figures['conformal_p95']:.3f})")

    colours = np.tile([[0.8, 0.8, 0.8]], (len(data.faces), 1))
    colours[chart] = [0.55, 0.6, 0.95]
    colours[region] = [0.93, 0.72, 0.55]
    draw_mesh(ax[1, 0], data.v_template, data.faces, colours=colours, yaw_deg=40)
    ax[1, 0].set_title("the chart on the head (grey: no detail UVs)", fontsize=10)

    gen = SyntheticDetails(model, image_size=256, map_size=256)
    names = data.expression_names
    psi = torch.zeros(1, data.n_expr)
    for n in ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"):
        psi[0, names.index(n)] = 1.0
    with torch.no_grad():
        s = gen.render(psi)
    T = s.tension_map[0, 0].numpy()
    im = ax[1, 1].imshow(np.where(gen.mapper.mask[0, 0].numpy() > 0, T, np.nan), cmap="RdBu_r", vmin=-0.5, vmax=0.5,
                         extent=(0, 1, 0, 1))
    fig.colorbar(im, ax=ax[1, 1], fraction=0.046, label="tension (+ compression)")
    uv_axes(ax[1, 1], "T_UV of a brow raise (Eq. 3, k = 2000 /m)")
    both = np.concatenate([s.coarse_image[0].permute(1, 2, 0).numpy(), s.image[0].permute(1, 2, 0).numpy()], 1)
    ax[1, 2].imshow(both[20:200])
    ax[1, 2].set_title("synthetic known answer: D = 0 | forehead lines from T_UV", fontsize=10)
    ax[1, 2].axis("off")
    fig.tight_layout()
    with atomic_write(args.out) as f:
        fig.savefig(f, format="png", dpi=70)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
