"""Where a coarse model's jaw-contour error comes from (BENCHMARKS.md, "L_sil against the ablation").

    python benchmarks/contour_errors.py [--checkpoint default] [--folder DATA/eval/helen-test]

On annotated crops (from the ground-truth box, as ``facetwin evaluate landmarks``) it reports:

* the share of contour points whose normal faces away (where Eq. 1 differs from a landmark loss)
  and the static-projection error on visible and occluded points;
* how many Eq. 1 matches of occluded labels are silhouette vertices hidden behind nearer surface
  (z-buffer test at the crop's resolution), and the label-to-match distance with and without them;
* the mean signed error of each contour point along the face's axes (outward / down, in
  inter-ocular units, in the frame of the annotated eye corners): a systematic slide along the jaw;
* with ``--refit FOLDER`` (e.g. HELEN-train): each contour point re-assigned to the mesh vertex
  (within 3 cm of it on the template) whose projection fits FOLDER's labels best where the point
  faces the camera, and the boundary error of that re-assigned embedding on the evaluation folder.

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
from facetwin.evaluation.landmarks import annotated_images, crop_for  # noqa: E402
from facetwin.models.coarse import load_coarse_model  # noqa: E402
from facetwin.losses.silhouette import match_silhouette  # noqa: E402
from facetwin.paths import shared_data_dir  # noqa: E402


def _crops(pairs, S):
    crops, gts = [], []
    for img, pts in pairs:
        image, scale = load_image(img)
        gt = read_pts(pts) * scale
        crop, A = crop_for(image, gt, S)
        crops.append(crop)
        gts.append(apply_affine(A, gt))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255), torch.from_numpy(np.stack(gts)).float()


def _predict(model, folder: Path, batch: int):
    """(vertices2d (N, V, 2), normal z (N, V), static contour (N, 17, 2), labels (N, 68, 2), inter-ocular (N,))."""
    v2, nz, lmk, gts = [], [], [], []
    pairs = annotated_images(folder)
    with torch.no_grad():
        for b in range(0, len(pairs), batch):
            x, gt = _crops(pairs[b:b + batch], model.encoder.image_size)
            geo = model(x)
            v2.append(geo.vertices2d.half())
            nz.append(geo.normals[..., 2].half())
            lmk.append(geo.landmarks2d[:, :17])
            gts.append(gt)
    gt = torch.cat(gts)
    return torch.cat(v2).float(), torch.cat(nz).float(), torch.cat(lmk), gt, (gt[:, 45] - gt[:, 36]).norm(dim=-1)


def refit_contour(model, fit_folder: Path, test_folder: Path, batch: int) -> dict:
    hm = model.head_model
    template = torch.as_tensor(np.asarray(hm.data.v_template), dtype=torch.float32)
    faces = torch.as_tensor(np.asarray(hm.data.landmark_faces[:17]))
    bary = torch.as_tensor(np.asarray(hm.data.landmark_bary[:17]), dtype=torch.float32)
    static = (template[hm.faces[faces]] * bary[..., None]).sum(1)  # (17, 3)
    v2, nz, lmk, gt, io = _predict(model, fit_folder, batch)
    chosen, fit_static = [], []
    for k in range(17):
        cand = torch.nonzero((template - static[k]).norm(dim=-1) < 0.03).flatten()
        facing = nz[:, int((template - static[k]).norm(dim=-1).argmin())] > 0.1
        err = (v2[facing][:, cand] - gt[facing, k:k + 1]).norm(dim=-1) / io[facing, None]
        chosen.append(int(cand[err.mean(0).argmin()]))
        fit_static.append(round(float(((lmk[facing, k] - gt[facing, k]).norm(dim=-1) / io[facing]).mean()), 4))
    v2, _, lmk, gt, io = _predict(model, test_folder, batch)
    before = ((lmk - gt[:, :17]).norm(dim=-1) / io[:, None]).mean()
    after = ((v2[:, chosen] - gt[:, :17]).norm(dim=-1) / io[:, None]).mean()
    return {"fit_on": str(fit_folder), "fit_static_error_facing_per_point": fit_static, "boundary_static": float(before), "boundary_refit": float(after),
            "moved_cm": [round(float((template[v] - static[k]).norm()) * 100, 1) for k, v in enumerate(chosen)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--folder", default=None, help="annotated images (default: $FACETWIN_DATA/eval/helen-test)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--refit", default=None, metavar="FOLDER", help="re-assign the contour points on FOLDER's labels")
    args = ap.parse_args()
    folder = Path(args.folder) if args.folder else shared_data_dir() / "eval" / "helen-test"
    if not folder.is_dir():
        sys.exit(f"contour_errors: no annotated folder at {folder} (set --folder or $FACETWIN_DATA)")
    model, _ = load_coarse_model(args.checkpoint)
    model.eval()
    S = model.encoder.image_size
    pairs = annotated_images(folder)
    if args.refit:
        refit = refit_contour(model, Path(args.refit), folder, args.batch)
    occluded, hidden, err_static, dist_all, dist_outline, signed = [], [], [], [], [], []
    with torch.no_grad():
        for b in range(0, len(pairs), args.batch):
            x, gt = _crops(pairs[b:b + args.batch], S)                        # gt: (B, 68, 2) crop pixels
            geo = model(x)
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
    if args.refit:
        out["refit"] = refit
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
