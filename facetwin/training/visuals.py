"""Image grids written during training: one row per image — input · overlay · render · landmarks
(ground truth green, projected model landmarks red, silhouette vertices blue)."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → (H, W, 3) uint8."""
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def draw_points(img: np.ndarray, pts: np.ndarray, colour, radius: int = 1) -> np.ndarray:
    img = np.ascontiguousarray(img)
    for x, y in pts:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(img, (int(round(x - 0.5)), int(round(y - 0.5))), radius, colour, -1, lineType=cv2.LINE_AA)
    return img


def shaded_geometry(vertices2d: torch.Tensor, normals: torch.Tensor, faces: torch.Tensor, size: int) -> np.ndarray:
    """Cheap painter's-algorithm grey shading of one mesh (for pictures only), (H, W, 3) uint8."""
    v = vertices2d.detach().cpu().numpy()
    n = normals.detach().cpu().numpy()
    f = faces.cpu().numpy()
    fz = n[f].mean(1)[:, 2]
    keep = fz > 0
    img = np.zeros((size, size, 3), np.uint8)
    order = np.argsort(fz[keep])
    tri = v[f[keep]][order]
    shade = (np.clip(fz[keep][order], 0, 1) * 200 + 40).astype(np.uint8)
    for t, s in zip(tri, shade):
        cv2.fillConvexPoly(img, np.round(t * 16).astype(np.int32), (int(s),) * 3, lineType=cv2.LINE_AA, shift=4)
    return img


def coarse_grid(inputs, geo, faces: torch.Tensor, max_rows: int = 6) -> np.ndarray:
    rows = []
    B = min(inputs.image.shape[0], max_rows)
    S = inputs.image.shape[-1]
    for i in range(B):
        img = to_uint8(inputs.image[i])
        if inputs.render is not None:
            render = to_uint8(inputs.render[i])
            mask = inputs.render_mask[i, 0].detach().float().cpu().numpy()[..., None]
        else:
            render = shaded_geometry(inputs.vertices2d[i], geo.normals[i], faces, S)
            mask = (render.sum(-1, keepdims=True) > 0).astype(np.float32)
        overlay = (img * (1 - 0.6 * mask) + render * 0.6 * mask).astype(np.uint8)
        lmk = img.copy()
        sil = inputs.silhouette[i].cpu().numpy()
        lmk = draw_points(lmk, inputs.vertices2d[i].detach().cpu().numpy()[sil], (60, 120, 255), 0)
        lmk = draw_points(lmk, inputs.gt_landmarks[i].cpu().numpy(), (0, 230, 0))
        lmk = draw_points(lmk, inputs.landmarks2d[i].detach().cpu().numpy(), (255, 40, 40))
        rows.append(np.concatenate([img, overlay, render, lmk], 1))
    return np.concatenate(rows, 0)
