"""Facial skin mask from 68 landmarks and a per-image skin-colour model.

No skin-segmentation weights exist offline, so the mask is built in two steps
(documented in docs/data.md):

1. **Geometric prior** — the face polygon (jaw contour 1–17 closed over the eyebrows raised
   towards the forehead by 0.45× the eyebrow-to-nose-tip distance), minus the eyes (dilated),
   the eyebrows (thick polylines) and the lips (outer lip polygon 49–60).
2. **Colour model** — a Gaussian in YCrCb fitted (with two rounds of outlier trimming) to
   pixels sampled on the cheeks and the nose, where skin is almost always visible. Pixels of
   the prior whose chroma Mahalanobis distance exceeds ``chroma_threshold`` or whose
   luma is far from the skin's (hair, glasses frames, hands, hats, dark background) are
   removed. A morphological opening/closing, filling small enclosed holes (< 0.4 % of the crop)
   and keeping the components touching the cheek samples clean it.

Returns uint8 masks (0/255) at the crop's resolution.
"""

from __future__ import annotations

import cv2
import numpy as np


def _poly(mask: np.ndarray, pts: np.ndarray, value: int = 255) -> None:
    cv2.fillPoly(mask, [np.round(pts - 0.5).astype(np.int32)], value)


def geometric_face_mask(landmarks: np.ndarray, shape: tuple[int, int], forehead: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """(face region, excluded parts) uint8 masks from ``(68, 2)`` landmarks."""
    h, w = shape
    lm = np.asarray(landmarks, dtype=np.float64)
    face = np.zeros((h, w), np.uint8)
    brows = lm[17:27]
    nose_tip = lm[30]
    brow_centre = brows.mean(0)
    up = brow_centre - nose_tip
    raise_by = forehead * up
    top = brows[::-1] + raise_by  # from right brow end back to left brow end
    outline = np.vstack([lm[0:17], top])
    _poly(face, outline)
    excluded = np.zeros((h, w), np.uint8)
    iod = np.linalg.norm(lm[36] - lm[45])
    thick = max(1, int(round(0.10 * iod)))
    for eye in (lm[36:42], lm[42:48]):
        _poly(excluded, eye)
    excluded = cv2.dilate(excluded, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * thick + 1, 2 * thick + 1)))
    for brow in (lm[17:22], lm[22:27]):
        cv2.polylines(excluded, [np.round(brow - 0.5).astype(np.int32)], False, 255, thickness=max(2, int(round(0.12 * iod))))
    _poly(excluded, lm[48:60])
    return face, excluded


def _sample_regions(landmarks: np.ndarray, shape) -> np.ndarray:
    """Cheek and nose sample mask (where skin is nearly always visible)."""
    lm = landmarks
    m = np.zeros(shape, np.uint8)
    # Left cheek: between the eye's lower lid, the nose side and the jaw; shrunk towards its centre.
    for tri in ([lm[41], lm[31], lm[3]], [lm[46], lm[35], lm[13]], [lm[39], lm[42], lm[30]], [lm[31], lm[35], lm[33]]):
        tri = np.array(tri)
        c = tri.mean(0)
        _poly(m, c + 0.7 * (tri - c))
    return m


def skin_mask(
    image: np.ndarray,
    landmarks: np.ndarray,
    valid: np.ndarray | None = None,
    chroma_threshold: float = 3.5,
    luma_sigmas: float = 3.0,
    max_hole: float = 0.004,
) -> np.ndarray:
    """Skin mask (H, W) uint8 in {0, 255} for an RGB uint8 crop and its ``(68, 2)`` landmarks.

    ``valid`` (H, W) marks pixels that come from the photo (not the crop's padding).
    """
    h, w = image.shape[:2]
    face, excluded = geometric_face_mask(landmarks, (h, w))
    prior = (face > 0) & (excluded == 0)
    if valid is not None:
        prior &= valid > 0
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb).reshape(-1, 3).astype(np.float64)
    samples = (_sample_regions(landmarks, (h, w)) > 0).reshape(-1) & prior.reshape(-1)
    if samples.sum() < 20:
        return (prior * 255).astype(np.uint8)
    x = ycc[samples]
    keep = np.ones(len(x), bool)
    for _ in range(3):  # trim outliers (specular highlights, stray hair) and refit
        mu = x[keep].mean(0)
        cov = np.cov(x[keep, 1:].T) + np.eye(2) * 4.0  # floor: JPEG chroma is quantised
        d2 = _mahalanobis2(x[:, 1:], mu[1:], cov)
        y_sd = max(x[keep, 0].std(), 12.0)
        keep = (d2 < 3.0**2) & (np.abs(x[:, 0] - mu[0]) < 2.5 * y_sd)
        if keep.sum() < 10:
            keep = np.ones(len(x), bool)
            break
    mu = x[keep].mean(0)
    cov = np.cov(x[keep, 1:].T) + np.eye(2) * 4.0
    y_sd = max(x[keep, 0].std(), 12.0)
    d2 = _mahalanobis2(ycc[:, 1:], mu[1:], cov).reshape(h, w)
    luma = ycc[:, 0].reshape(h, w)
    colour_ok = (d2 < chroma_threshold**2) & (luma > mu[0] - luma_sigmas * y_sd) & (luma < mu[0] + 1.5 * luma_sigmas * y_sd)
    mask = (prior & colour_ok).astype(np.uint8) * 255
    k = max(3, int(round(0.015 * max(h, w))) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    # Fill small enclosed holes (wrinkles, pores, specular spots); eyes, brows and lips are
    # removed again by the prior below.
    inverse = (mask == 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inverse, connectivity=4)
    small = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] < max_hole * h * w
             and stats[i, cv2.CC_STAT_LEFT] > 0 and stats[i, cv2.CC_STAT_TOP] > 0
             and stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH] < w
             and stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] < h]
    if small:
        mask[np.isin(labels, small)] = 255
    mask &= prior.astype(np.uint8) * 255
    # Keep components that overlap the cheek/nose samples (drops isolated hair-coloured blobs).
    n, labels = cv2.connectedComponents(mask)
    if n > 2:
        seeds = np.unique(labels[(_sample_regions(landmarks, (h, w)) > 0) & (mask > 0)])
        mask = np.isin(labels, seeds[seeds > 0]).astype(np.uint8) * 255
    return mask


def _mahalanobis2(x: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(cov)
    d = x - mu
    return np.einsum("ni,ij,nj->n", d, inv, d)
