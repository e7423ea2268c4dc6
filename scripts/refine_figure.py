"""The landmark refinement on the demo photo (public domain): the encoder's prediction beside the
refined one, each with the annotator's 68 points (green) and the mesh's projected points (red).

    python scripts/refine_figure.py --out docs/images/refine_astronaut.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def panel(res, points, title: str, side: int = 360) -> np.ndarray:
    """The overlay cropped around the face (side² pixels), the two point sets drawn at that size,
    a caption strip above."""
    import cv2

    from facetwin.data.alignment import apply_affine
    from facetwin.rendering.visualize import draw_landmarks

    lo, hi = points.min(0), points.max(0)
    c, r = (lo + hi) / 2, 0.75 * float(max(hi - lo))
    k = side / (2 * r)
    A = np.array([[k, 0, side / 2 - c[0] * k], [0, k, side / 2 - c[1] * k]])
    img = cv2.warpAffine(np.ascontiguousarray(res.overlay(opacity=0.55, landmarks=False)), A, (side, side), flags=cv2.INTER_LINEAR)
    img = draw_landmarks(img, pred=apply_affine(A, res.landmarks2d), gt=apply_affine(A, points), radius=2.0, connect=True)
    img = img[0] if img.ndim == 4 else img
    strip = np.full((28, side, 3), 255, np.uint8)
    cv2.putText(strip, title, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([strip, img], 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/images/refine_astronaut.png")
    args = ap.parse_args()
    import cv2

    from facetwin.api import demo_photo
    from facetwin.inference.reconstructor import FaceTwin

    photo = demo_photo()
    refined = FaceTwin(detail=None).reconstruct(photo)
    plain = FaceTwin(detail=None, refine=False).reconstruct(photo)
    points = np.asarray(refined.detection["annotator_landmarks"])
    fit = refined.detection["landmark_fit_nme"]
    row = np.concatenate([panel(plain, points, f"encoder alone: NME {fit['encoder']:.3f} to the points"),
                          np.full((388, 6, 3), 255, np.uint8),
                          panel(refined, points, f"refined (default): NME {fit['refined']:.3f}")], 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
    print(args.out)


if __name__ == "__main__":
    main()
