"""How much of the head model's identity basis an image can show, and how much β a model uses.

For each of the first ``--components`` identity directions of the head model: RMS vertex motion
per prior SD (mm), the part left after removing the best similarity transform (translation +
scale + rotation, which the orthographic camera absorbs: invisible in an image), and that
remainder on the face region only. With ``--folder``: the spread (SD over photos) of each
predicted β component and the β verification AUC using only the first k components.

    python benchmarks/identity_basis.py [--folder ../shared/data/identities/eval] [--model default]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def similarity_residual(shape_dir: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) motion of one basis direction → (motion minus translation, minus translation +
    scale + small rotation), both (V, 3)."""
    v = template - template.mean(0)
    r = shape_dir - shape_dir.mean(0)
    a = (r * v).sum() / (v * v).sum()
    r2 = r - a * v
    A = np.zeros((len(v) * 3, 3))
    z = np.zeros(len(v))
    A[0::3] = np.stack([z, v[:, 2], -v[:, 1]], 1)
    A[1::3] = np.stack([-v[:, 2], z, v[:, 0]], 1)
    A[2::3] = np.stack([v[:, 1], -v[:, 0], z], 1)
    w, *_ = np.linalg.lstsq(A, r2.reshape(-1), rcond=None)
    return r, r2 - (A @ w).reshape(-1, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--components", type=int, default=12)
    ap.add_argument("--folder", default=None, help="folder of person sub-folders: β spread and AUC by components")
    ap.add_argument("--model", "--checkpoint", dest="model", default="default")
    args = ap.parse_args()
    from facetwin.headmodel import load_head_model

    data = load_head_model("open").data
    rms = lambda x: float(np.sqrt((x ** 2).sum(1).mean()) * 1000)  # noqa: E731  mm
    rows = []
    for k in range(min(args.components, data.n_shape)):
        d = data.shapedirs[:, :, k].astype(np.float64)
        _, shape_only = similarity_residual(d, data.v_template.astype(np.float64))
        rows.append({"component": k, "rms_mm": rms(d), "after_similarity_mm": rms(shape_only),
                     "face_after_similarity_mm": rms(shape_only[data.masks["face"]])})
    all_rms = [rms(data.shapedirs[:, :, k].astype(np.float64)) for k in range(data.n_shape)]
    out = {"basis": rows, "components_over_1mm": int(sum(r > 1.0 for r in all_rms)),
           "components_under_0.2mm": int(sum(r < 0.2 for r in all_rms))}
    if args.folder:
        import torch

        from facetwin.evaluation.likeness import _to_tensor, cosine_distances, label_photo, person_folders, verification
        from facetwin.models.coarse import load_coarse_model

        model, _ = load_coarse_model(args.model)
        photos = [label_photo(n, p) for n, ps in person_folders(args.folder) for p in ps]
        photos = [p for p in photos if p is not None]
        ids = np.array([p.person for p in photos])
        betas = []
        with torch.no_grad():
            for s in range(0, len(photos), 32):
                x = _to_tensor([p.crop for p in photos[s:s + 32]], "cpu")
                betas.append(model.encoder(model.encoder_input(x)).shape.float().numpy())
        B = np.concatenate(betas)
        out["beta_sd_first"] = [round(float(v), 3) for v in B.std(0)[: args.components]]
        out["beta_auc_by_components"] = {k: verification(cosine_distances(B[:, :k]), ids)["auc"] for k in (2, 5, 10, 20, 50, B.shape[1])}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
