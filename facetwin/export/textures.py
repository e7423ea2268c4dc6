"""Texture images of a face in the head model's UV layout (row 0 = v 1, so PNGs look upright).

* :func:`albedo_texture` — the open albedo model at the reconstructed coefficients α;
* :func:`photo_texture` — the photo unwrapped through the fitted mesh, with where it is visible;
* :func:`blend_photo_over_albedo` — the material texture: the photo where seen, the albedo
  (gain-matched to the photo's colour) elsewhere;
* :func:`normal_map_from_displacement` — a tangent-space normal map from a UV displacement map.
"""

from __future__ import annotations

import numpy as np
import torch

from facetwin.headmodel.data import HeadModelData


def albedo_texture(alpha: np.ndarray | None, size: int = 512, model=None) -> np.ndarray:
    """(S, S, 3) uint8 albedo of the open albedo model at coefficients α (K',) (the mean when None)."""
    from facetwin.appearance.albedo import load_albedo_model

    model = model or load_albedo_model(output_size=size)
    model.output_size = size
    with torch.no_grad():
        if alpha is None:
            tex = model.mean_texture()
        else:
            a = torch.as_tensor(np.asarray(alpha, np.float32)).reshape(1, -1)[:, : model.n_coefficients]
            tex = model(a)
    return _to_uint8(tex[0].permute(1, 2, 0).numpy())


def photo_texture(data: HeadModelData, vertices: np.ndarray, scale: float, translation: np.ndarray, image: np.ndarray,
                  size: int = 512, uv_mapper=None) -> tuple[np.ndarray, np.ndarray]:
    """Unwrap a photo into UV space through the fitted mesh (orthographic camera of facetwin).

    Args:
        vertices: (V, 3) posed mesh, metres; scale: pixels per metre; translation: (2,) pixels;
        image: (H, W, 3) uint8 photo the mesh was fitted to.
    Returns:
        texture (S, S, 3) uint8 and visibility (S, S) uint8 (255 where the texel was seen).
    """
    from facetwin.geometry.camera import orthographic_screen_vertices

    uvm = uv_mapper or uv_mapper_of(data, size)
    v = torch.as_tensor(np.asarray(vertices, np.float32))[None]
    sv = orthographic_screen_vertices(v, torch.tensor([float(scale)]), torch.as_tensor(np.asarray(translation, np.float32))[None])
    img = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        tex, vis = uvm.unwrap(img, sv)
    return _to_uint8(tex[0].permute(1, 2, 0).numpy()), (vis[0, 0].numpy() > 0.5).astype(np.uint8) * 255


def blend_photo_over_albedo(photo: np.ndarray, visibility: np.ndarray, albedo: np.ndarray, feather: int = 6) -> np.ndarray:
    """(S, S, 3) uint8: the photo where it was visible (eroded and feathered by ``feather`` texels
    so that the grazing-angle rim is not used), the albedo elsewhere, scaled per channel so that
    its mean over the visible texels equals the photo's (the photo carries the light)."""
    import cv2

    S = albedo.shape[0]
    if photo.shape[:2] != (S, S):
        photo = cv2.resize(photo, (S, S), interpolation=cv2.INTER_AREA)
        visibility = cv2.resize(visibility, (S, S), interpolation=cv2.INTER_NEAREST)
    seen = (visibility > 127).astype(np.uint8)
    k = max(1, int(feather))
    core = cv2.erode(seen, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    w = cv2.GaussianBlur(core.astype(np.float32), (0, 0), k / 2.0) * seen
    p = photo.astype(np.float32)
    a = albedo.astype(np.float32)
    if core.sum() > 100:
        m = core > 0
        gain = p[m].mean(0) / np.maximum(a[m].mean(0), 1.0)
        a = a * np.clip(gain, 0.3, 3.0)
    out = p * w[..., None] + a * (1 - w[..., None])
    return _to_uint8(out / 255.0)


def bleed(texture: np.ndarray, mask: np.ndarray, texels: int = 8) -> np.ndarray:
    """Extend a texture ``texels`` beyond its ``mask`` (S, S) by averaging covered neighbours, so
    that bilinear filtering and mip-maps at UV seams do not pull in the background colour."""
    import cv2

    t = texture.astype(np.float32)
    m = (mask > 0).astype(np.float32)
    t = t * m[..., None]
    for _ in range(texels):
        s = cv2.blur(t, (3, 3))
        c = cv2.blur(m, (3, 3))
        grow = (m == 0) & (c > 0)
        t[grow] = s[grow] / c[grow][:, None]
        m = np.where(grow, 1.0, m)
    return np.clip(t + 0.5, 0, 255).astype(np.uint8)


_UV_MAPPERS: dict = {}


def uv_mapper_of(data: HeadModelData, size: int):
    """The head model's UV layout rasterised at ``size`` (cached: rasterising it takes seconds)."""
    from facetwin.appearance.albedo import uv_layout_fingerprint
    from facetwin.rendering.uv import UVMapper

    key = (uv_layout_fingerprint(data), int(size))
    if key not in _UV_MAPPERS:
        if len(_UV_MAPPERS) > 4:
            _UV_MAPPERS.clear()
        _UV_MAPPERS[key] = UVMapper.from_head_model(data, size)
    return _UV_MAPPERS[key]


def uv_coverage(data: HeadModelData, size: int) -> np.ndarray:
    """(S, S) uint8 mask of the texels covered by the head model's UV layout."""
    return (uv_mapper_of(data, size).mask[0, 0].numpy() > 0).astype(np.uint8)


def metres_per_texel(data: HeadModelData, vertices: np.ndarray, size: int) -> float:
    """Average surface length of one texel of an S × S map: sqrt(3D area / UV area) / S."""
    v = np.asarray(vertices, np.float64)
    f, uvf, uv = data.faces, data.uv_faces, np.asarray(data.uv_coords, np.float64)
    a3 = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    e1, e2 = uv[uvf[:, 1]] - uv[uvf[:, 0]], uv[uvf[:, 2]] - uv[uvf[:, 0]]
    a2 = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
    return float(np.sqrt(a3 / max(a2, 1e-12)) / size)


def normal_map_from_displacement(displacement: np.ndarray, texel_metres: float) -> np.ndarray:
    """Tangent-space normal map (S, S, 3) uint8 (glTF/OpenGL: +x = +u, +y = +v, +z = out) of a
    height field ``displacement`` (S, S) in metres along the surface normal, row 0 = v 1.

    ``n ∝ (-∂h/∂u, -∂h/∂v, 1)`` with the derivatives in metres per metre of surface (central
    differences; ``texel_metres`` from :func:`metres_per_texel`). A zero map gives (128, 128, 255).
    """
    h = np.asarray(displacement, np.float64)
    dh_du = np.gradient(h, axis=1) / texel_metres
    dh_dv = -np.gradient(h, axis=0) / texel_metres  # rows grow downwards, v upwards
    n = np.stack([-dh_du, -dh_dv, np.ones_like(h)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return np.clip((n * 0.5 + 0.5) * 255 + 0.5, 0, 255).astype(np.uint8)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(a, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
