"""The detail outputs of one face (a reconstruction with a detail model): pictures of D and of the
detail normals, the displaced mesh, and the detail normal map baked into the export UV layout in
tangent space (what a GLB material's ``normalTexture`` and a renderer's normal map expect).

Input arrays (see :class:`facetwin.inference.reconstructor.DetailResult`, duck-typed here):
``displacement`` (S, S) metres and ``normal_map`` (S, S, 3) unit model-frame normals, both in the
head model's detail UV layout; ``displaced_vertices`` (V, 3) metres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

DISPLACEMENT_RANGE = 0.01  # metres at full scale in the 16-bit displacement PNG (DECA's ±0.01)


def displacement_png(displacement: np.ndarray) -> np.ndarray:
    """(S, S) D in metres → (S, S) uint16: 32768 + D / 0.01 · 32767 (so 0 m = mid-grey)."""
    d = np.clip(np.asarray(displacement, np.float64) / DISPLACEMENT_RANGE, -1, 1)
    return np.round(32768 + d * 32767).astype(np.uint16)


def displacement_picture(displacement: np.ndarray, full_scale: float = 0.002) -> np.ndarray:
    """(S, S, 3) uint8: blue = into the skin, red = out, white = 0, ``full_scale`` metres saturated."""
    d = np.clip(np.asarray(displacement, np.float64) / full_scale, -1, 1)
    pos, neg = np.clip(d, 0, None), np.clip(-d, 0, None)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], -1)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def normal_picture(normals: np.ndarray) -> np.ndarray:
    """(S, S, 3) unit normals → (S, S, 3) uint8 ``(n + 1) / 2``; zero vectors stay black."""
    n = np.asarray(normals, np.float64)
    on = np.linalg.norm(n, axis=-1, keepdims=True) > 0.5
    return np.where(on, (np.clip(n, -1, 1) + 1) / 2 * 255 + 0.5, 0).astype(np.uint8)


def tangent_normal_map(data, vertices: np.ndarray, detail_normals: np.ndarray, size: int = 512) -> np.ndarray:
    """Bake model-frame detail normals into ``data``'s own (export) UV layout in tangent space.

    Args:
        data: the exported :class:`~facetwin.headmodel.HeadModelData` (its ``uv_*`` and ``detail_uv_*``).
        vertices: (V, 3) the posed coarse mesh the detail normals belong to (metres).
        detail_normals: (S, S, 3) unit normals in the detail layout (0 off the chart).
        size: side of the baked map.
    Returns:
        (size, size, 3) uint8 glTF normal texture ((x, y, z) tangent-space → (n + 1) / 2; the
        tangent frame from the UV gradients, bitangent = normal × tangent · sign as glTF
        reconstructs it). Texels without details hold the flat normal (128, 128, 255).
    """
    from facetwin.rendering.texture import sample_texture
    from facetwin.rendering.uv import UVMapper

    V = np.asarray(vertices, np.float64)
    faces = np.asarray(data.faces, np.int64)
    uv = np.asarray(data.uv_coords, np.float64)
    uvf = np.asarray(data.uv_faces, np.int64)
    mapper = UVMapper(torch.as_tensor(faces), torch.as_tensor(uv, dtype=torch.float32), torch.as_tensor(uvf), size)
    fr = mapper.fragments
    tri = fr.face_index.numpy()
    bary = fr.bary_t.numpy().T                                          # (N, 3)
    from facetwin.export.asset import smooth_normals, uv_tangents

    tan_c, bit_c = uv_tangents(V, faces, uv, uvf)  # per UV corner, as the GLB's TANGENT

    nrm_v = smooth_normals(V.astype(np.float32), faces).astype(np.float64)
    N = np.einsum("nk,nkc->nc", bary, nrm_v[faces[tri]])
    T = np.einsum("nk,nkc->nc", bary, tan_c[uvf[tri]])
    Bt = np.einsum("nk,nkc->nc", bary, bit_c[uvf[tri]])
    N /= np.linalg.norm(N, axis=1, keepdims=True).clip(1e-12)
    T -= (T * N).sum(1, keepdims=True) * N
    T /= np.linalg.norm(T, axis=1, keepdims=True).clip(1e-12)
    sign = np.where((np.cross(N, T) * Bt).sum(1, keepdims=True) < 0, -1.0, 1.0)
    B = np.cross(N, T) * sign
    # the detail normal at each texel's surface point (detail UVs of the same triangle)
    duvf = np.asarray(data.detail_uv_faces, np.int64)
    charted = (duvf[tri] >= 0).all(1)
    duv = np.einsum("nk,nkc->nc", bary, np.asarray(data.detail_uv_coords, np.float64)[duvf[tri].clip(0)])
    dn = torch.as_tensor(np.ascontiguousarray(np.transpose(detail_normals, (2, 0, 1))), dtype=torch.float32)[None]
    nd = sample_texture(dn, torch.as_tensor(duv, dtype=torch.float32)[None])[0].double().numpy()   # (N, 3)
    ok = charted & (np.linalg.norm(nd, axis=1) > 0.5)
    nd /= np.linalg.norm(nd, axis=1, keepdims=True).clip(1e-12)
    ts = np.stack([(nd * T).sum(1), (nd * B).sum(1), (nd * N).sum(1)], 1)
    ts = np.where(ok[:, None] & (ts[:, 2:3] > 0), ts, np.array([0.0, 0.0, 1.0]))
    out = np.zeros((size * size, 3), np.uint8)
    out[:] = (128, 128, 255)
    out[fr.pixel_index.numpy()] = np.round((ts + 1) / 2 * 255).clip(0, 255).astype(np.uint8)
    return out.reshape(size, size, 3)


def write_detail_files(detail, out: str | Path, name: str, data, vertices: np.ndarray, texture: np.ndarray | None = None,
                       normal_texture_size: int = 512) -> dict[str, str]:
    """Write ``<name>_displacement.png`` (16-bit, 0 m = 32768, ±0.01 m full range),
    ``<name>_displacement_view.png`` (blue in / red out, ±2 mm), ``<name>_detail_normals.png``
    (model-frame normals in the detail layout), ``<name>_normal.png`` (tangent-space normal map
    in the export layout, the GLB's normal texture) and ``<name>_detailed.obj`` (+ .mtl + texture:
    the displaced mesh). Returns ``{kind: path}`` and the baked normal map under ``"_normal_map"``."""
    from facetwin.export.obj import write_obj
    from facetwin.outputs import ensure_dir, write_image

    out = ensure_dir(out)
    files: dict = {}
    files["displacement"] = str(_write_png16(out / f"{name}_displacement.png", displacement_png(detail.displacement)))
    files["displacement_view"] = str(write_image(out / f"{name}_displacement_view.png", displacement_picture(detail.displacement)))
    files["detail_normals"] = str(write_image(out / f"{name}_detail_normals.png", normal_picture(detail.normal_map)))
    normal = tangent_normal_map(data, vertices, detail.normal_map, normal_texture_size)
    files["normal_map"] = str(write_image(out / f"{name}_normal.png", normal))
    written = write_obj(out / f"{name}_detailed.obj", detail.displaced_vertices, data.faces, data.uv_coords, data.uv_faces, texture)
    for fname, path in written.items():
        files[{".obj": "detailed_obj", ".mtl": "detailed_mtl", ".png": "detailed_texture"}.get(Path(fname).suffix, fname)] = str(path)
    files["_normal_map"] = normal
    return files


def _write_png16(path: Path, image: np.ndarray) -> Path:
    """(H, W) uint16 as a 16-bit greyscale PNG (OpenCV's writer), atomically."""
    import cv2

    from facetwin.outputs import atomic_write

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image, np.uint16))
    if not ok:
        raise ValueError(f"cannot encode {path.name}")
    with atomic_write(path, "wb") as f:
        f.write(buf.tobytes())
    return path
