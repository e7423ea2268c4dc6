"""The 68-point landmark embedding of the open head model (build time).

The embedding itself (triangle + barycentric per landmark) is a small committed table,
``landmark_embedding.json`` beside this file, written by ``scripts/refine_landmark_embedding.py``
from fits to annotated photos; the build only reads it, so rebuilding needs no photo data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EMBEDDING_FILE = Path(__file__).with_name("landmark_embedding.json")

from facetwin.geometry.ibug68 import MIRROR_68  # noqa: E402,F401 (the one mirror table)


def load_embedding(path: Path = EMBEDDING_FILE) -> tuple[np.ndarray, np.ndarray, dict]:
    """(68,) triangle ids, (68, 3) barycentrics and the provenance dict of the committed table.

    A missing table gives a placeholder (every landmark on triangle 0), used only to bootstrap
    ``scripts/refine_landmark_embedding.py --init``.
    """
    if not Path(path).is_file():
        return np.zeros(68, np.int64), np.full((68, 3), 1 / 3), {"method": "placeholder"}
    table = json.loads(Path(path).read_text())
    faces = np.asarray(table["faces"], np.int64)
    bary = np.asarray(table["bary"], np.float64)
    return faces, bary / bary.sum(1, keepdims=True), table.get("provenance", {})


def save_embedding(faces: np.ndarray, bary: np.ndarray, provenance: dict, path: Path = EMBEDDING_FILE) -> None:
    table = {
        "provenance": provenance,
        "faces": [int(f) for f in faces],
        "bary": [[round(float(b), 6) for b in row] for row in bary],
    }
    Path(path).write_text(json.dumps(table, indent=1) + "\n")


def raycast_front(vertices: np.ndarray, faces: np.ndarray, allowed: np.ndarray, points: np.ndarray):
    """Frontmost surface point under each (x, y) of ``points`` (N, 2), looking along -z.

    Where the frontmost hit is not on an ``allowed`` triangle (e.g. an eyeball) or nothing is
    hit, the nearest point on an allowed triangle (its closest corner) is used instead.
    Returns triangle ids (N,) and barycentrics (N, 3).
    """
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    allowed_v = np.zeros(len(vertices), bool)
    allowed_v[faces[allowed].reshape(-1)] = True
    from facetwin.headmodel.build.contour import vertex_to_face

    tri_of, _ = vertex_to_face(np.where(allowed[:, None], faces, faces[np.flatnonzero(allowed)[0]]), len(vertices))
    out_f = np.full(len(points), -1, np.int64)
    out_b = np.zeros((len(points), 3))
    for n, p in enumerate(points):
        v0, v1, v2 = b[:, :2] - a[:, :2], c[:, :2] - a[:, :2], p - a[:, :2]
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        den = np.where(np.abs(den) < 1e-15, 1e-15, den)
        l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        l0 = 1 - l1 - l2
        hit = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        if hit.any():
            z = np.where(hit, l0 * a[:, 2] + l1 * b[:, 2] + l2 * c[:, 2], -np.inf)
            k = int(np.argmax(z))
            if allowed[k]:
                out_f[n], out_b[n] = k, (l0[k], l1[k], l2[k])
                continue
            point = np.array([p[0], p[1], z[k]])
        else:
            point = np.array([p[0], p[1], vertices[:, 2].max()])
        cand = np.flatnonzero(allowed_v)
        v = cand[np.argmin(np.linalg.norm(vertices[cand] - point, axis=1))]
        t = tri_of[v]
        out_f[n], out_b[n] = t, (faces[t] == v).astype(float)
    return out_f, out_b


def embedding_points(vertices: np.ndarray, faces: np.ndarray, lm_faces: np.ndarray, lm_bary: np.ndarray) -> np.ndarray:
    """(68, 3) landmark positions on a (V, 3) mesh."""
    return (vertices[faces[lm_faces]] * lm_bary[..., None]).sum(1)
