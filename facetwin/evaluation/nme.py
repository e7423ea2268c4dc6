"""Normalised mean error of 68-point landmarks (pure functions, numpy or torch inputs).

Normalisation: the outer-eye-corner distance of the ground truth (points 37 and 46,
1-based), as in 300-W. Regions (1-based, inclusive): boundary = 1–17 (jaw silhouette),
inner = 18–68, overall = 1–68.
"""

from __future__ import annotations

import numpy as np

from facetwin.geometry.ibug68 import nose_asymmetry  # noqa: F401  (the head-turn ruler of the pose bins)

REGIONS = {"boundary": slice(0, 17), "inner": slice(17, 68), "overall": slice(0, 68)}
OUTER_EYE_CORNERS = (36, 45)  # 0-based
# |nose_asymmetry| bins; roughly < 10°, 10–23°, > 23° of yaw (see nose_asymmetry)
POSE_BINS = {"frontal": (0.0, 0.1), "moderate": (0.1, 0.25), "large": (0.25, float("inf"))}


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def per_image_nme(pred, gt) -> dict[str, np.ndarray]:
    """Per-image NME ``(N,)`` for each region; ``pred``, ``gt``: ``(N, 68, 2)`` (or ``(68, 2)``)."""
    pred, gt = _np(pred), _np(gt)
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    if pred.shape != gt.shape or pred.shape[-2:] != (68, 2):
        raise ValueError(f"expected matching (N, 68, 2) arrays, got {pred.shape} and {gt.shape}")
    norm = np.linalg.norm(gt[:, OUTER_EYE_CORNERS[0]] - gt[:, OUTER_EYE_CORNERS[1]], axis=-1)
    err = np.linalg.norm(pred - gt, axis=-1) / np.maximum(norm, 1e-9)[:, None]
    return {name: err[:, sl].mean(axis=1) for name, sl in REGIONS.items()}


def nme(pred, gt) -> dict[str, float]:
    """Mean NME over images: ``{"boundary", "inner", "overall"}`` (fractions, not %)."""
    return {name: float(v.mean()) for name, v in per_image_nme(pred, gt).items()}


def ced(errors, max_error: float = 0.08, steps: int = 81) -> tuple[np.ndarray, np.ndarray, float]:
    """Cumulative error distribution: thresholds ``(steps,)``, fraction of images with error
    <= threshold ``(steps,)``, and the area under the curve normalised to [0, 1] (AUC@max_error)."""
    errors = _np(errors).reshape(-1)
    thresholds = np.linspace(0.0, max_error, steps)
    frac = (errors[None, :] <= thresholds[:, None]).mean(axis=1) if errors.size else np.zeros(steps)
    auc = float(np.trapezoid(frac, thresholds) / max_error)
    return thresholds, frac, auc


def failure_rate(errors, threshold: float = 0.08) -> float:
    errors = _np(errors).reshape(-1)
    return float((errors > threshold).mean()) if errors.size else float("nan")


def nme_by_pose(per_image: dict, asymmetry, bins: dict = POSE_BINS) -> dict[str, dict[str, float]]:
    """Mean NME per head-turn bin: ``{bin: {"images", "boundary", "inner", "overall"}}``.

    ``per_image`` as from :func:`per_image_nme`; ``asymmetry`` ``(N,)`` from :func:`nose_asymmetry`
    (of the ground truth); a bin holds images with ``lo <= |asymmetry| < hi``. Empty bins give NaN.
    """
    a = np.abs(_np(asymmetry).reshape(-1))
    out = {}
    for name, (lo, hi) in bins.items():
        sel = (a >= lo) & (a < hi)
        row = {"images": int(sel.sum())}
        for region, errors in per_image.items():
            e = _np(errors).reshape(-1)
            row[region] = float(e[sel].mean()) if sel.any() else float("nan")
        out[name] = row
    return out
