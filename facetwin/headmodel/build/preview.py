"""Flat-shaded painter's-algorithm previews of head meshes with matplotlib (docs figures)."""

from __future__ import annotations

import numpy as np


def draw_mesh(ax, vertices: np.ndarray, faces: np.ndarray, colours=None, yaw_deg: float = 0.0,
              pitch_deg: float = 0.0, points: np.ndarray | None = None, point_colour="red",
              light=(0.3, 0.4, 1.0), hide: np.ndarray | None = None) -> np.ndarray:
    """Draw a (V, 3) mesh seen along -z after a yaw/pitch rotation; returns the rotation.

    colours: (F, 3) per-triangle RGB in [0, 1] or None (skin tone). hide: (F,) bool triangles
    to skip. points: (N, 3) drawn on top when they face the camera.
    """
    from matplotlib.collections import PolyCollection

    a, b = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    R = Rx @ Ry
    v = vertices @ R.T
    tri = v[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    keep = n[:, 2] > 0
    if hide is not None:
        keep &= ~hide
    l = np.asarray(light, float)
    shade = np.clip(n @ (l / np.linalg.norm(l)), 0, 1) * 0.75 + 0.25
    base = np.tile([[0.85, 0.68, 0.58]], (len(faces), 1)) if colours is None else np.asarray(colours, float)
    rgb = np.clip(base * shade[:, None], 0, 1)
    order = np.argsort(tri[:, :, 2].mean(1))
    order = order[keep[order]]
    ax.add_collection(PolyCollection(tri[order][:, :, :2], facecolors=rgb[order], edgecolors="none", antialiased=False))
    if points is not None:
        p = points @ R.T
        ax.scatter(p[:, 0], p[:, 1], s=4, c=point_colour, zorder=3)
    lo, hi = v[:, :2].min(0), v[:, :2].max(0)
    c, r = (lo + hi) / 2, (hi - lo).max() / 2 * 1.05
    ax.set_xlim(c[0] - r, c[0] + r)
    ax.set_ylim(c[1] - r, c[1] + r)
    ax.set_aspect("equal")
    ax.axis("off")
    return R
