"""Small stand-ins for the coarse-stage tests: an ellipsoid head model with the full
HeadModelData interface and a synthetic data set rendered from it (known landmarks)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from facetwin.geometry.mesh import uv_sphere
from facetwin.headmodel.data import HeadModelData
from facetwin.headmodel.model import HeadModel


def standin_head_data(n_shape: int = 8, n_expr: int = 6, seed: int = 0) -> HeadModelData:
    rng = np.random.default_rng(seed)
    v, f = uv_sphere(12, 24)
    v = v.numpy() * np.array([0.075, 0.1, 0.085], np.float32)
    f = f.numpy()
    V = len(v)
    smooth = lambda k: np.stack([np.sin((k + 1) * v[:, 0] * 20 + k), np.cos((k + 2) * v[:, 1] * 15), np.sin(v[:, 2] * 10 * (k + 1))], 1)  # noqa: E731
    shapedirs = np.stack([0.004 * smooth(k) for k in range(n_shape)], 2).astype(np.float32)
    exprdirs = np.stack([0.003 * smooth(k + 10) * (v[:, 1:2] < 0) for k in range(n_expr)], 2).astype(np.float32)
    j_template = np.array([[0, -0.1, 0], [0, -0.08, 0], [0, -0.02, 0.02], [0.03, 0.03, 0.06], [-0.03, 0.03, 0.06]], np.float32)
    w = np.zeros((V, 5), np.float32)
    w[:, 0] = 1.0
    # Landmarks: front-facing triangles nearest to a face-like 2D layout.
    centroids = v[f].mean(1)
    normals_z = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])[:, 2]
    t = np.linspace(-1, 1, 17)
    jaw = np.stack([0.068 * np.sin(t * 1.3), -0.01 - 0.07 * np.cos(t * 1.2)], 1)
    inner = np.stack([rng.uniform(-0.045, 0.045, 51), rng.uniform(-0.06, 0.04, 51)], 1)
    layout = np.concatenate([jaw, inner], 0)
    front = np.where(normals_z > 0)[0]
    lf = np.array([front[np.argmin(((centroids[front, :2] - p) ** 2).sum(1))] for p in layout])
    bary = np.full((68, 3), 1 / 3, np.float32)
    masks = {"nose": (np.abs(v[:, 0]) < 0.01) & (v[:, 2] > 0.08), "ears": np.abs(v[:, 0]) > 0.073}
    cand = ~(masks["nose"] | masks["ears"])
    return HeadModelData(
        name="standin", v_template=v.astype(np.float32), faces=f.astype(np.int64), shapedirs=shapedirs, exprdirs=exprdirs,
        j_template=j_template, j_shapedirs=np.zeros((5, 3, n_shape), np.float32), j_exprdirs=np.zeros((5, 3, n_expr), np.float32),
        lbs_weights=w, landmark_faces=lf.astype(np.int64), landmark_bary=bary, masks=masks, silhouette_candidates=cand,
        dynamic_landmark_faces=np.stack([lf[:17]] * 3), dynamic_landmark_bary=np.stack([bary[:17]] * 3),
        dynamic_landmark_yaw=np.array([-0.5, 0.0, 0.5], np.float32), expression_range=(0.0, 1.0),
    )


def standin_head_model() -> HeadModel:
    return HeadModel(standin_head_data())


class SyntheticFaces(Dataset):
    """Grey-shaded renders of the stand-in head with random pose/scale/shift; exact landmarks."""

    def __init__(self, n: int = 32, size: int = 64, seed: int = 0, identities: int = 8):
        from facetwin.geometry.camera import orthographic_screen_vertices, project_orthographic
        from facetwin.rendering import MeshRenderer

        head = standin_head_model()
        g = torch.Generator().manual_seed(seed)
        pose = torch.zeros(n, 5, 3)
        pose[:, 0, 0] = (torch.rand(n, generator=g) - 0.5) * 0.4
        pose[:, 0, 1] = (torch.rand(n, generator=g) - 0.5) * 0.8
        shape = torch.randn(n, head.n_shape, generator=g) * 0.5
        with torch.no_grad():
            out = head(shape, None, pose)
            s = size * 0.6 / 0.13 * (1 + 0.1 * (torch.rand(n, generator=g) - 0.5))
            t = size * (0.5 + 0.05 * (torch.rand(n, 2, generator=g) - 0.5))
            renderer = MeshRenderer(head.faces, None, None, size)
            light = torch.zeros(n, 9, 3)
            light[:, 0] = 2.5
            light[:, 3] = 0.8
            r = renderer.render(orthographic_screen_vertices(out.vertices, s, t), out.vertices, None, light)
        bg = torch.rand(n, 3, 1, 1, generator=g) * 0.5
        self.images = (r.image + (1 - r.mask) * bg).clamp(0, 1)
        self.masks = r.mask
        self.landmarks = project_orthographic(out.landmarks, s, t)
        self.identity = torch.arange(n) % identities

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        # A little noise so the engine's per-sample seeding is exercised.
        noise = torch.randn(self.images[i].shape) * 0.01
        return {"image": (self.images[i] + noise).clamp(0, 1), "landmarks": self.landmarks[i],
                "skin": self.masks[i], "identity": self.identity[i]}
