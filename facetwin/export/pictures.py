"""Pictures of an exported face: the textured mesh seen from a few head turns (demo page, README)."""

from __future__ import annotations

import numpy as np
import torch

from facetwin.headmodel.data import HeadModelData


def textured_views(data: HeadModelData, params: dict, texture: np.ndarray, yaws_deg=(-45.0, 0.0, 45.0), size: int = 384,
                   keep_pose: bool = False) -> list[np.ndarray]:
    """Renders (size, size, 3) uint8 of the face with its texture, one per yaw (degrees, + turns
    the face to its left), under a soft front light. The global rotation of ``params["pose"]``
    is replaced by the yaw unless ``keep_pose``; neck, jaw and eyes stay as reconstructed."""
    from facetwin.geometry.camera import orthographic_screen_vertices
    from facetwin.geometry.rotation import axis_angle_to_matrix
    from facetwin.headmodel.model import HeadModel
    from facetwin.rendering.renderer import MeshRenderer
    from facetwin.rendering.shading import default_lighting

    head = HeadModel(data)
    f32 = lambda a, n: torch.as_tensor(np.asarray(a, np.float32)).reshape(1, -1)[:, :n]  # noqa: E731
    shape = torch.zeros(1, head.n_shape)
    expr = torch.zeros(1, head.n_expr)
    s, e = f32(params.get("shape", np.zeros(0)), head.n_shape), f32(params.get("expression", np.zeros(0)), head.n_expr)
    shape[:, : s.shape[1]], expr[:, : e.shape[1]] = s, e
    pose = torch.as_tensor(np.asarray(params.get("pose", np.zeros((5, 3))), np.float32)).reshape(1, 5, 3).clone()
    if not keep_pose:
        pose[:, 0] = 0
    tex = torch.from_numpy(np.array(texture[..., :3])).permute(2, 0, 1)[None].float() / 255
    renderer = MeshRenderer.from_head_model(data, size)
    light = default_lighting(1, ambient=0.75, directional=(0.0, 0.2, 0.45))
    out = []
    with torch.no_grad():
        verts = head(shape, expr, pose).vertices  # (1, V, 3) metres
        lo, hi = verts[0].min(0).values, verts[0].max(0).values
        centre = (lo + hi) / 2
        extent = float((hi - lo)[:2].max())
        scale = torch.tensor([0.86 * size / extent])
        for yaw in yaws_deg:
            R = axis_angle_to_matrix(torch.tensor([[0.0, float(np.radians(yaw)), 0.0]]))[0]
            v = (verts - centre) @ R.T
            sv = orthographic_screen_vertices(v, scale, torch.tensor([[size / 2, size / 2]]))
            r = renderer.render(sv, v, tex, light)
            img = r.image[0].clamp(0, 1) * r.mask[0] + 0.19 * (1 - r.mask[0])  # dark grey background
            out.append((img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    return out


def render_in_photo(data: HeadModelData, vertices: np.ndarray, scale: float, translation: np.ndarray, image: np.ndarray,
                    texture: np.ndarray, light: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the mesh with ``texture`` (S, S, 3) under the SH ``light`` (9, 3) (a soft
    front light when None), seen by the reconstruction's camera and drawn over ``image``."""
    from facetwin.geometry.camera import orthographic_screen_vertices
    from facetwin.rendering.renderer import MeshRenderer
    from facetwin.rendering.shading import default_lighting

    H, W = image.shape[:2]
    v = torch.as_tensor(np.asarray(vertices, np.float32))[None]
    sv = orthographic_screen_vertices(v, torch.tensor([float(scale)]), torch.as_tensor(np.asarray(translation, np.float32))[None])
    tex = torch.from_numpy(np.array(texture[..., :3])).permute(2, 0, 1)[None].float() / 255
    sh = default_lighting(1) if light is None else torch.as_tensor(np.asarray(light, np.float32)).reshape(1, 9, 3)
    with torch.no_grad():
        r = MeshRenderer.from_head_model(data, (H, W)).render(sv, v, tex, sh)
        a = r.mask[0].permute(1, 2, 0).numpy()
        rgb = r.image[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255
    return (image * (1 - a) + rgb * a + 0.5).astype(np.uint8)
