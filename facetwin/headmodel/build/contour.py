"""Silhouettes of a mesh and the FLAME-style dynamic contour landmark tables (build time)."""

from __future__ import annotations

import numpy as np


def rotation_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return np.cross(b - a, c - a)


def silhouette_vertices(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,) bool: vertices on an edge between a front- and a back-facing triangle (view along -z)."""
    front = face_normals(vertices, faces)[:, 2] > 0
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    owner_front = np.concatenate([front, front, front])
    key = np.sort(edges, 1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, owner_front = key[order], owner_front[order]
    same = np.all(key[1:] == key[:-1], 1) & (owner_front[1:] != owner_front[:-1])
    out = np.zeros(vertices.shape[0], bool)
    out[key[1:][same].reshape(-1)] = True
    return out


def vertex_to_face(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """One triangle containing each vertex and the one-hot barycentric placing it there."""
    tri = np.full(n_vertices, -1, np.int64)
    corner = np.zeros(n_vertices, np.int64)
    for c in range(3):
        unset = tri[faces[:, c]] < 0
        tri[faces[unset, c]] = np.flatnonzero(unset)
        corner[faces[unset, c]] = c
    bary = np.eye(3)[corner]
    return tri, bary


def dynamic_contour(vertices: np.ndarray, faces: np.ndarray, candidates: np.ndarray,
                    contour_points: np.ndarray, yaws_deg: np.ndarray, centre_x: float = 0.0):
    """For each yaw, the 17 contour landmarks FLAME-style landmark marching would select.

    Args:
        vertices: (V, 3) neutral mesh; candidates: (V,) bool silhouette candidates;
        contour_points: (17, 3) the static (zero-pose boundary) contour landmarks on ``vertices``.
        yaws_deg: (Y,) yaw angles (rotation about +y).
    Returns:
        faces (Y, 17), bary (Y, 17, 3), yaw radians (Y,).
    """
    tri_of, bary_of = vertex_to_face(faces, vertices.shape[0])
    out_f, out_b = [], []
    for yaw in np.deg2rad(yaws_deg):
        R = rotation_y(yaw)
        rv = vertices @ R.T
        rp = contour_points @ R.T
        sil = silhouette_vertices(rv, faces) & candidates
        cx = (np.array([centre_x, 0, 0]) @ R.T)[0]
        idx = np.flatnonzero(sil)
        fs, bs = [], []
        for k in range(17):
            side = np.sign(rp[k, 0] - cx)
            pool = idx[np.sign(rv[idx, 0] - cx) == side] if k != 8 else idx
            # The silhouette point at the same height, nearest to the static landmark.
            w = 0.1 if k != 8 else 1.0
            cost = np.abs(rv[pool, 1] - rp[k, 1]) + w * np.abs(rv[pool, 0] - rp[k, 0])
            v = pool[np.argmin(cost)]
            fs.append(tri_of[v])
            bs.append(bary_of[v])
        out_f.append(fs)
        out_b.append(bs)
    return np.asarray(out_f, np.int64), np.asarray(out_b, np.float64), np.deg2rad(yaws_deg).astype(np.float64)
