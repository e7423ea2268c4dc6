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
                    contour_faces: np.ndarray, contour_bary: np.ndarray, yaws_deg: np.ndarray,
                    band: float = 0.006):
    """For each yaw, the 17 contour landmarks FLAME-style landmark marching would select.

    The static landmarks (the zero-pose boundary) stay where they are on the side turned towards
    the camera and at the chin. On the side turning away, each landmark slides forward along
    the surface at its own height to the visible outline: of the silhouette candidates within
    ``band`` metres of its height that lie in front of it (towards the midline), the one that
    projects outermost after the rotation (the static point itself when nothing does).

    Args:
        vertices: (V, 3) neutral mesh (x = subject's left); candidates: (V,) bool silhouette
            candidates; contour_faces/bary: (17,), (17, 3) static contour embedding;
            yaws_deg: (Y,) yaw angles (rotation about +y; positive turns the face to +x, so the
            subject's left side, landmarks 10-17, turns away).
    Returns:
        faces (Y, 17), bary (Y, 17, 3), yaw radians (Y,).
    """
    tri_of, bary_of = vertex_to_face(faces, vertices.shape[0])
    static = (vertices[faces[contour_faces]] * contour_bary[..., None]).sum(1)   # (17, 3)
    cand = np.flatnonzero(candidates)
    out_f, out_b = [], []
    for yaw in np.deg2rad(np.asarray(yaws_deg, np.float64)):
        fs, bs = list(contour_faces), list(contour_bary)
        far = 1.0 if yaw > 0 else -1.0          # x sign of the side turning away
        outward = lambda p: far * p[..., 0] * np.cos(yaw) + p[..., 2] * np.sin(abs(yaw))  # noqa: E731
        for k in range(17):
            if k == 8 or abs(yaw) < 1e-9 or np.sign(static[k, 0]) != far:
                continue
            p = static[k]
            pool = cand[(np.abs(vertices[cand, 1] - p[1]) < band) & (far * vertices[cand, 0] > 0)
                        & (far * vertices[cand, 0] <= far * p[0]) & (vertices[cand, 2] >= p[2])]
            if pool.size == 0:
                continue
            v = pool[np.argmax(outward(vertices[pool]))]
            if outward(vertices[v]) > outward(p):
                fs[k], bs[k] = tri_of[v], bary_of[v]
        out_f.append(fs)
        out_b.append(bs)
    return (np.asarray(out_f, np.int64), np.asarray(out_b, np.float64),
            np.deg2rad(np.asarray(yaws_deg, np.float64)))


def dynamic_tables(data, yaws_deg=np.arange(-40, 41, 5)):
    """Dynamic contour tables for a :class:`HeadModelData` (neutral template, its embedding)."""
    return dynamic_contour(
        np.asarray(data.v_template, np.float64), data.faces, np.asarray(data.silhouette_candidates, bool),
        np.asarray(data.landmark_faces[:17]), np.asarray(data.landmark_bary[:17], np.float64), yaws_deg,
    )
