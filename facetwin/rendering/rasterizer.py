"""A differentiable triangle rasteriser in plain PyTorch (CPU and CUDA, no compiler).

Two passes, as in nvdiffrast:

1. **Visibility** (no gradients): every triangle lists the pixel centres inside its bounding box,
   edge functions keep those inside it, and ``scatter_reduce(amin)`` on a packed int64 key
   ``(quantised depth << 25) | triangle id`` keeps the closest triangle per pixel.
2. **Barycentrics** (with gradients): for each covered pixel the barycentric coordinates of its
   centre are recomputed analytically from the triangle's screen vertices, so gradients reach
   vertex positions; :func:`interpolate` then carries them to vertex attributes, and texture
   look-ups (:mod:`facetwin.rendering.texture`) to textures.

Coordinates follow :mod:`facetwin.geometry.camera`: pixel units, origin at the top-left pixel
corner, y down, pixel centres at ``(j + 0.5, i + 0.5)``; screen z larger = closer. There are no
gradients with respect to which triangle covers a pixel (silhouette edges), like nvdiffrast
without its antialiasing pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_DEPTH_BITS = 38
_ID_BITS = 25
_EMPTY = torch.iinfo(torch.int64).max
_INSIDE_EPS = 1e-6  # closes cracks between neighbours when a centre lies exactly on an edge


@dataclass
class Fragments:
    """Which triangle covers each pixel, and where.

    Attributes:
        triangle_ids: (B, H, W) int64 index into ``faces``; -1 where no triangle covers the pixel.
        pixel_index: (N,) int64 flat index into ``B*H*W`` of the covered pixels.
        face_index: (N,) int64 triangle of each covered pixel.
        bary: (N, 3) barycentric coordinates of each covered pixel centre (differentiable;
            perspective-correct when rasterised with ``perspective_correct=True``).
    """

    triangle_ids: torch.Tensor
    pixel_index: torch.Tensor
    face_index: torch.Tensor
    bary: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.triangle_ids.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.triangle_ids.shape[1:3])

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool, True where a triangle covers the pixel centre."""
        return self.triangle_ids >= 0

    @property
    def batch_index(self) -> torch.Tensor:
        """(N,) batch element of each covered pixel."""
        H, W = self.image_size
        return torch.div(self.pixel_index, H * W, rounding_mode="floor")

    def bary_map(self) -> torch.Tensor:
        """(B, H, W, 3) barycentrics, zeros in the background (differentiable)."""
        return scatter_pixels(self.bary, self)


def rasterize(
    screen_vertices: torch.Tensor,
    faces: torch.Tensor,
    image_size: int | tuple[int, int],
    cull_backfaces: bool = False,
    perspective_correct: bool = False,
) -> Fragments:
    """Rasterise a batch of meshes that share one triangle list.

    Args:
        screen_vertices: (B, V, 3) ``(x, y, z)``: pixel coordinates and screen depth (larger =
            closer); from :func:`facetwin.geometry.camera.orthographic_screen_vertices` or
            :meth:`PerspectiveCamera.screen_vertices` (z = 1 / camera depth).
        faces: (F, 3) int64, counter-clockwise outside.
        image_size: H (square) or (H, W).
        cull_backfaces: drop triangles facing away from the camera (positive signed image area,
            see :mod:`facetwin.geometry.camera`).
        perspective_correct: screen z is ``1 / camera depth``; barycentrics are corrected
            for perspective and triangles with a vertex behind the camera (z <= 0) are dropped.
    Returns:
        :class:`Fragments`.
    """
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    B, V = screen_vertices.shape[:2]
    faces = faces.to(screen_vertices.device)
    if faces.shape[0] >= 2**_ID_BITS:
        raise ValueError(f"at most {2**_ID_BITS - 1} triangles")
    with torch.no_grad():
        tri_ids = _visibility(screen_vertices.detach(), faces, H, W, cull_backfaces, perspective_correct)
    pixel_index = torch.nonzero(tri_ids.reshape(-1) >= 0).squeeze(1)
    face_index = tri_ids.reshape(-1)[pixel_index]
    bary = _barycentrics(screen_vertices, faces, pixel_index, face_index, H, W, perspective_correct)
    return Fragments(tri_ids, pixel_index, face_index, bary)


def interpolate(attributes: torch.Tensor, faces: torch.Tensor, fragments: Fragments, background: float = 0.0) -> torch.Tensor:
    """Interpolate per-vertex (or per-corner) attributes at the covered pixels.

    Args:
        attributes: (B, A, C) per batch element, or (A, C) shared by the batch.
        faces: (F, 3) int64 index into the A dimension, same triangle order as the rasterised
            faces (e.g. the mesh faces for vertex attributes, ``uv_faces`` for per-corner UVs).
        fragments: from :func:`rasterize`.
        background: value of uncovered pixels.
    Returns:
        (B, H, W, C), differentiable w.r.t. ``attributes`` and the screen vertices.
    """
    return scatter_pixels(interpolate_packed(attributes, faces, fragments), fragments, background)


def interpolate_packed(attributes: torch.Tensor, faces: torch.Tensor, fragments: Fragments) -> torch.Tensor:
    """Like :func:`interpolate` but only the covered pixels: (N, C) in ``fragments.pixel_index`` order."""
    faces = faces.to(attributes.device)
    corners = faces.index_select(0, fragments.face_index)  # (N, 3)
    if attributes.dim() == 2:
        flat = attributes
    else:
        B, A, C = attributes.shape
        flat = attributes.reshape(B * A, C)
        corners = corners + (fragments.batch_index * A)[:, None]
    vals = flat.index_select(0, corners.reshape(-1)).reshape(-1, 3, flat.shape[-1])
    return torch.einsum("nk,nkc->nc", fragments.bary.to(vals.dtype), vals)


def scatter_pixels(values: torch.Tensor, fragments: Fragments, background: float = 0.0) -> torch.Tensor:
    """(N, C) values of the covered pixels → (B, H, W, C) image with ``background`` elsewhere."""
    B = fragments.batch_size
    H, W = fragments.image_size
    out = torch.full((B * H * W, values.shape[-1]), background, dtype=values.dtype, device=values.device)
    out = out.index_copy(0, fragments.pixel_index, values)
    return out.reshape(B, H, W, -1)


def depth_map(screen_vertices: torch.Tensor, faces: torch.Tensor, fragments: Fragments, background: float = float("-inf")) -> torch.Tensor:
    """(B, H, W) screen z of the visible surface (differentiable), ``background`` elsewhere."""
    faces = faces.to(screen_vertices.device)
    z = screen_vertices[..., 2:3]
    packed = interpolate_packed(z, faces, fragments)
    return scatter_pixels(packed, fragments, background)[..., 0]


# -- pass 1: visibility ------------------------------------------------------------------------

def _visibility(sv: torch.Tensor, faces: torch.Tensor, H: int, W: int, cull: bool, perspective: bool) -> torch.Tensor:
    B, V, _ = sv.shape
    F = faces.shape[0]
    dev = sv.device
    tri = sv[:, faces]  # (B, F, 3 corners, 3)
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    x0, x1, x2 = x.unbind(-1)
    y0, y1, y2 = y.unbind(-1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)  # (B, F), negative = facing the camera
    valid = area.abs() > 1e-12
    if cull:
        valid &= area < 0
    if perspective:
        valid &= (z > 0).all(-1)
    # Integer bounding boxes of the pixel centres inside the triangle's box.
    xmin = torch.ceil(x.amin(-1) - 0.5).clamp(0, W)
    xmax = torch.floor(x.amax(-1) - 0.5).clamp(-1, W - 1)
    ymin = torch.ceil(y.amin(-1) - 0.5).clamp(0, H)
    ymax = torch.floor(y.amax(-1) - 0.5).clamp(-1, H - 1)
    bw = (xmax - xmin + 1).clamp_min(0)
    bh = (ymax - ymin + 1).clamp_min(0)
    valid &= torch.isfinite(area)
    counts = torch.where(valid, bw * bh, torch.zeros_like(bw)).to(torch.int64).reshape(-1)

    # Affine edge functions b_k(p) = a_k p_x + b_k p_y + c_k (barycentric k) and the depth plane.
    inv = 1.0 / torch.where(valid, area, torch.ones_like(area))
    e0 = torch.stack([-(y2 - y1), (x2 - x1), (y2 - y1) * x1 - (x2 - x1) * y1], -1) * inv[..., None]
    e1 = torch.stack([-(y0 - y2), (x0 - x2), (y0 - y2) * x2 - (x0 - x2) * y2], -1) * inv[..., None]
    e2 = torch.stack([-(y1 - y0), (x1 - x0), (y1 - y0) * x0 - (x1 - x0) * y0], -1) * inv[..., None]
    zplane = e0 * z0_(z) + e1 * z1_(z) + e2 * z2_(z)
    # Depth quantised per image over the depth range of its vertices.
    zv = sv[..., 2]
    zmax = zv.amax(1)
    zmin = zv.amin(1)
    if perspective:
        zmin = torch.where(zv > 0, zv, torch.full_like(zv, float("inf"))).amin(1).clamp_max(zmax)
    zscale = (2**_DEPTH_BITS - 2) / (zmax - zmin).clamp_min(1e-12)
    coeffs = torch.cat([e0, e1, e2, zplane], -1).reshape(B * F, 12)
    box = torch.stack([xmin, ymin, bw], -1).reshape(B * F, 3).to(torch.int64)

    total = int(counts.sum())
    out = torch.full((B * H * W,), _EMPTY, dtype=torch.int64, device=dev)
    if total == 0:
        return torch.full((B, H, W), -1, dtype=torch.int64, device=dev)
    tri_idx = torch.repeat_interleave(torch.arange(B * F, device=dev), counts, output_size=total)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=dev) - start.index_select(0, tri_idx)
    bx = box.index_select(0, tri_idx)
    w = bx[:, 2]
    row = torch.div(local, w, rounding_mode="floor")
    px = bx[:, 0] + (local - row * w)
    py = bx[:, 1] + row
    c = coeffs.index_select(0, tri_idx)  # (N, 12)
    fx = px.to(c.dtype) + 0.5
    fy = py.to(c.dtype) + 0.5
    b0 = c[:, 0] * fx + c[:, 1] * fy + c[:, 2]
    b1 = c[:, 3] * fx + c[:, 4] * fy + c[:, 5]
    b2 = c[:, 6] * fx + c[:, 7] * fy + c[:, 8]
    inside = (b0 >= -_INSIDE_EPS) & (b1 >= -_INSIDE_EPS) & (b2 >= -_INSIDE_EPS)
    depth = c[:, 9] * fx + c[:, 10] * fy + c[:, 11]
    batch = torch.div(tri_idx, F, rounding_mode="floor")
    face = tri_idx - batch * F
    keep = torch.nonzero(inside).squeeze(1)
    batch, face, px, py, depth = (t.index_select(0, keep) for t in (batch, face, px, py, depth))
    q = ((zmax.index_select(0, batch) - depth) * zscale.index_select(0, batch)).clamp(0, 2**_DEPTH_BITS - 1)
    key = (q.to(torch.int64) << _ID_BITS) | face
    pix = batch * (H * W) + py * W + px
    out.scatter_reduce_(0, pix, key, reduce="amin")
    ids = torch.where(out == _EMPTY, torch.full_like(out, -1), out & (2**_ID_BITS - 1))
    return ids.reshape(B, H, W)


def z0_(z):
    return z[..., 0:1]


def z1_(z):
    return z[..., 1:2]


def z2_(z):
    return z[..., 2:3]


# -- pass 2: barycentrics with gradients -------------------------------------------------------

def _barycentrics(sv: torch.Tensor, faces: torch.Tensor, pixel_index: torch.Tensor, face_index: torch.Tensor, H: int, W: int, perspective: bool) -> torch.Tensor:
    B, V, _ = sv.shape
    batch = torch.div(pixel_index, H * W, rounding_mode="floor")
    rem = pixel_index - batch * (H * W)
    py = torch.div(rem, W, rounding_mode="floor")
    px = rem - py * W
    fx = (px.to(sv.dtype) + 0.5)
    fy = (py.to(sv.dtype) + 0.5)
    corners = faces.index_select(0, face_index) + (batch * V)[:, None]
    p = sv.reshape(B * V, 3).index_select(0, corners.reshape(-1)).reshape(-1, 3, 3)
    x0, x1, x2 = p[:, 0, 0], p[:, 1, 0], p[:, 2, 0]
    y0, y1, y2 = p[:, 0, 1], p[:, 1, 1], p[:, 2, 1]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    w0 = (x2 - x1) * (fy - y1) - (y2 - y1) * (fx - x1)
    w1 = (x0 - x2) * (fy - y2) - (y0 - y2) * (fx - x2)
    bary = torch.stack([w0, w1], -1) / area[:, None]
    bary = torch.cat([bary, 1 - bary.sum(-1, keepdim=True)], -1)
    if perspective:
        wz = bary * p[:, :, 2]
        bary = wz / wz.sum(-1, keepdim=True)
    return bary
