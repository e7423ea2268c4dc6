"""Documentation figure of the silhouette loss (Eq. 1) on the open head model.

    PYTHONPATH=. python scripts/loss_figures.py docs/images/losses_silhouette.png

Synthetic on purpose (no photo is stored): the head is rendered turned by 50°, the "labels" are
put where an annotator would click (visible contour points on the landmark, hidden ones on the
outer outline at the same height), and the figure shows what Eq. 1 compares each label with.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch


def silhouette_figure(path: str | Path, yaw_deg: float = 50.0, size: int = 320) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facetwin.geometry.camera import orthographic_screen_vertices, project_orthographic
    from facetwin.headmodel import load_head_model
    from facetwin.losses.silhouette import match_silhouette
    from facetwin.rendering import MeshRenderer, default_lighting
    from facetwin.rendering.silhouette import landmark_normal_z, silhouette_vertices

    head = load_head_model("open")
    pose = torch.zeros(1, 5, 3)
    pose[0, 0, 1] = math.radians(yaw_deg)
    out = head(pose=pose)
    s = torch.tensor([size * 3.2])
    face_y = float(out.vertices[0, torch.as_tensor(head.data.masks["face"]), 1].mean())
    t = torch.tensor([[size / 2, size / 2 + float(s) * face_y]])
    with torch.no_grad():
        img = MeshRenderer.from_head_model(head.data, image_size=size).render(
            orthographic_screen_vertices(out.vertices, s, t), out.vertices, None, default_lighting(1))
        picture = (img.image[0] * img.mask[0] + (1 - img.mask[0])).clamp(0, 1).permute(1, 2, 0).numpy()
        nz = landmark_normal_z(out.vertices, head.faces, head.landmark_faces[:17], head.landmark_bary[:17])
        sil = silhouette_vertices(out.vertices, head.faces, torch.as_tensor(head.data.silhouette_candidates))
        v2d = project_orthographic(out.vertices, s, t)
        lm2d = project_orthographic(out.landmarks, s, t)[:, :17]
        occluded = nz[0] <= 0
        # an annotator clicks hidden contour points on the outer outline at the same height
        gt = lm2d.clone()
        side = 1.0 if yaw_deg > 0 else -1.0
        sv_all = v2d[0, sil[0]]
        for i in torch.nonzero(occluded).flatten().tolist():
            band = sv_all[(sv_all[:, 1] - lm2d[0, i, 1]).abs() < 4]
            if len(band):
                gt[0, i, 0] = (side * band[:, 0]).max() * side + side * 1.5
        m = match_silhouette(lm2d, nz, v2d, sil, gt)

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.imshow(picture)
    sv = v2d[0, sil[0]].numpy()
    ax.scatter(sv[:, 0], sv[:, 1], s=4, c="#1f77ff", label="silhouette vertices Ṽ_e")
    lm, g, tg = lm2d[0].numpy(), gt[0].numpy(), m.target[0].numpy()
    occ = occluded.numpy()
    ax.scatter(lm[~occ, 0], lm[~occ, 1], s=40, c="#ffb000", edgecolors="k", linewidths=0.4, label="k̃_i facing the camera (N_z > 0)")
    ax.scatter(lm[occ, 0], lm[occ, 1], s=22, c="#e02020", edgecolors="k", linewidths=0.4, label="k̃_i hidden (N_z < 0)")
    ax.scatter(g[:, 0], g[:, 1], s=16, marker="x", c="#008000", linewidths=1.2, label="labels k_i")
    for i in np.flatnonzero(occ):
        ax.plot([g[i, 0], tg[i, 0]], [g[i, 1], tg[i, 1]], c="#10a010", lw=1)
        ax.plot([lm[i, 0], g[i, 0]], [lm[i, 1], g[i, 1]], c="#e02020", lw=0.6, ls=":")
    ax.set_axis_off()
    ax.legend(loc="lower left", fontsize=6.5, framealpha=0.9)
    ax.set_title(f"Eq. 1 at {yaw_deg:.0f}° yaw: hidden contour labels match the outline", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(silhouette_figure(sys.argv[1] if len(sys.argv) > 1 else "docs/images/losses_silhouette.png"))
