"""Where a coarse model's jaw-contour error comes from (BENCHMARKS.md, "L_sil against the ablation").

    python benchmarks/contour_errors.py [--checkpoint default] [--folder DATA/eval/helen-test]

On annotated crops (from the ground-truth box, as ``facetwin evaluate landmarks``) it reports:

* the share of contour points whose normal faces away (where Eq. 1 differs from a landmark loss)
  and the static-projection error on visible and occluded points;
* how many Eq. 1 matches of occluded labels are silhouette vertices hidden behind nearer surface
  (z-buffer test at the crop's resolution), and the label-to-match distance with and without them;
* the mean signed error of each contour point along the face's axes (outward / down, in
  inter-ocular units, in the frame of the annotated eye corners): a systematic slide along the jaw.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facetwin.data.alignment import apply_affine  # noqa: E402
from facetwin.data.io import load_image  # noqa: E402
from facetwin.data.pts import read_pts  # noqa: E402
from facetwin.inference.landmark_eval import annotated_images, crop_for  # noqa: E402
from facetwin.inference.reconstructor import load_coarse_model  # noqa: E402
from facetwin.losses.silhouette import match_silhouette  # noqa: E402
from facetwin.paths import shared_data_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--folder", default=None, help="annotated images (default: $FACETWIN_DATA/eval/helen-test)")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    folder = Path(args.folder) if args.folder else shared_data_dir() / "eval" / "helen-test"
    if not folder.is_dir():
        sys.exit(f"contour_errors: no annotated folder at {folder} (set --folder or $FACETWIN_DATA)")
    model, _ = load_coarse_model(args.checkpoint)
    model.eval()
    S = model.encoder.image_size
    pairs = annotated_images(folder)
    occluded, hidden, err_static, dist_all, dist_outline, signed = [], [], [], [], [], []
    with torch.no_grad():
        for b in range(0, len(pairs), args.batch):
            crops, gts = [], []
            for img, pts in pairs[b:b + args.batch]:
                image, scale = load_image(img)
                gt = read_pts(pts) * scale
                crop, A = crop_for(image, gt, S)
                crops.append(crop)
                gts.append(apply_affine(A, gt))
            geo = model(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255))
            gt = torch.from_numpy(np.stack(gts)).float()                      # (B, 68, 2) crop pixels
            io = (gt[:, 45] - gt[:, 36]).norm(dim=-1)                          # (B,)
            lmk, nz = geo.landmarks2d[:, :17], geo.landmarks_normal_z[:, :17]
            every = model.silhouette(geo)
            outline = model.silhouette(geo, unoccluded_size=S)
            m_all = match_silhouette(lmk, nz, geo.vertices2d, every, gt[:, :17])
            m_out = match_silhouette(lmk, nz, geo.vertices2d, outline, gt[:, :17])
            occ = m_all.occluded
            v = m_all.vertex.clamp(min=0)
            seen = torch.gather(outline | ~every, 1, v)                        # matched vertex on the outline
            occluded.append(occ)
            hidden.append(occ & (m_all.vertex >= 0) & ~seen)
            err_static.append((lmk - gt[:, :17]).norm(dim=-1) / io[:, None])
            dist_all.append(((m_all.target - gt[:, :17]).norm(dim=-1) / io[:, None])[occ])
            dist_outline.append(((m_out.target - gt[:, :17]).norm(dim=-1) / io[:, None])[occ])
            # signed error in the frame of the annotated eye corners: x outward from the nose, y down
            ex = (gt[:, 45] - gt[:, 36]) / io[:, None]
            ey = torch.stack([-ex[:, 1], ex[:, 0]], -1)
            d = (lmk - gt[:, :17]) / io[:, None, None]
            side = torch.sign(((gt[:, :17] - gt[:, 27:36].mean(1, keepdim=True)) * ex[:, None]).sum(-1))
            signed.append(torch.stack([(d * ex[:, None]).sum(-1) * side, (d * ey[:, None]).sum(-1)], -1))
    occ, hid = torch.cat(occluded), torch.cat(hidden)
    e = torch.cat(err_static)
    sg = torch.cat(signed).mean(0)
    out = {
        "images": len(pairs),
        "contour_points": int(occ.numel()),
        "occluded_share": float(occ.float().mean()),
        "static_error_visible": float(e[~occ].mean()),
        "static_error_occluded": float(e[occ].mean()),
        "occluded_share_of_boundary_error": float(e[occ].sum() / e.sum()),
        "eq1_matches_hidden_share": float(hid.sum() / occ.sum()),
        "eq1_match_distance_all_silhouette": float(torch.cat(dist_all).mean()),
        "eq1_match_distance_visible_outline": float(torch.cat(dist_outline).mean()),
        "mean_signed_error_per_point": {str(k + 1): {"outward": round(float(sg[k, 0]), 4), "down": round(float(sg[k, 1]), 4)}
                                        for k in range(17)},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
