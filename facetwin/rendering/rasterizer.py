"""A differentiable triangle rasteriser in plain PyTorch (CPU and CUDA, no compiler).

Two passes, as in nvdiffrast:

1. **Visibility** (no gradients): every triangle lists the rows of its bounding box, the span of
   pixel centres inside it on each row is solved from its edge functions, and
   ``scatter_reduce(amin)`` on a packed int64 key ``(quantised depth << 25) | triangle id``
   keeps the closest triangle per pixel. Work is proportional to the covered area (plus one
   entry per box row), memory is bounded by chunking.
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

import os
from dataclasses import dataclass

import torch

_DEPTH_BITS = 38
_ID_BITS = 25
_EMPTY = torch.iinfo(torch.int64).max
_INSIDE_EPS = 1e-6  # closes cracks between neighbours when a centre lies exactly on an edge
_ROW_BUDGET = 2_000_000    # bounding-box rows per chunk: bounds memory for huge or off-screen meshes
_PIXEL_BUDGET = 4_000_000  # candidate pixels per chunk


@dataclass
class Fragments:
    """Which triangle covers each pixel, and where.

    Attributes:
        triangle_ids: (B, H, W) int64 index into ``faces``; -1 where no triangle covers the pixel.
        pixel_index: (N,) int64 flat index into ``B*H*W`` of the covered pixels (sorted, so each
            image's pixels form one contiguous run).
        face_index: (N,) int64 triangle of each covered pixel.
        bary_t: (3, N) barycentric coordinates of each covered pixel centre, one row per corner
            (differentiable; perspective-correct when rasterised with ``perspective_correct``).
            Rows are contiguous: elementwise work on them is much faster on CPU than on (N, 3).
        batch_index: (N,) int64 image of each covered pixel.
    """

    triangle_ids: torch.Tensor
    pixel_index: torch.Tensor
    face_index: torch.Tensor
    bary_t: torch.Tensor
    batch_index: torch.Tensor

    @property
    def bary(self) -> torch.Tensor:
        """(N, 3) barycentrics (a transposed view of ``bary_t``)."""
        return self.bary_t.T

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

    def counts(self) -> list[int]:
        """Covered pixels per image (the lengths of the per-image runs)."""
        return torch.bincount(self.batch_index, minlength=self.batch_size).tolist()

    def to(self, device) -> "Fragments":
        return Fragments(*(t.to(device) for t in (self.triangle_ids, self.pixel_index, self.face_index, self.bary_t, self.batch_index)))

    def bary_map(self) -> torch.Tensor:
        """(B, H, W, 3) barycentrics, zeros in the background (differentiable)."""
        return scatter_pixels(self.bary, self)


def rasterize(
    screen_vertices: torch.Tensor,
    faces: torch.Tensor,
    image_size: int | tuple[int, int],
    cull_backfaces: bool = False,
    perspective_correct: bool = False,
    backend: str | None = None,
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
        backend: visibility pass, "torch" (default) or "moderngl" (optional OpenGL, CPU tensors,
            see :mod:`facetwin.rendering.backend_moderngl`); default from
            ``$FACETWIN_RASTER_BACKEND``. Gradients are the same either way.
    Returns:
        :class:`Fragments`.
    """
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    faces = faces.to(screen_vertices.device)
    tri_ids = triangle_ids(screen_vertices, faces, (H, W), cull_backfaces, perspective_correct, backend)
    # (b, y, x) of the covered pixels straight from nonzero: no integer divisions needed.
    where = torch.nonzero(tri_ids >= 0)
    batch, py, px = where.unbind(1)
    pixel_index = (batch * H + py) * W + px
    face_index = tri_ids[batch, py, px]
    bary_t = _barycentrics(screen_vertices, faces, batch, py, px, face_index, perspective_correct)
    return Fragments(tri_ids, pixel_index, face_index, bary_t, batch)


def triangle_ids(screen_vertices: torch.Tensor, faces: torch.Tensor, image_size: int | tuple[int, int],
                 cull_backfaces: bool = False, perspective_correct: bool = False, backend: str | None = None) -> torch.Tensor:
    """The visibility pass of :func:`rasterize` alone: (B, H, W) int64 id of the closest triangle
    per pixel, -1 where none covers it (no barycentrics, no gradients). Arguments as there."""
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    faces = faces.to(screen_vertices.device)
    if faces.shape[0] >= 2**_ID_BITS:
        raise ValueError(f"at most {2**_ID_BITS - 1} triangles")
    backend = backend or os.environ.get("FACETWIN_RASTER_BACKEND", "torch")
    with torch.no_grad():
        if backend == "moderngl" and screen_vertices.device.type == "cpu":
            from facetwin.rendering import backend_moderngl

            return backend_moderngl.visibility(screen_vertices.detach(), faces, H, W, cull_backfaces, perspective_correct)
        if backend in ("torch", "moderngl"):
            return _visibility(screen_vertices.detach(), faces, H, W, cull_backfaces, perspective_correct)
        raise ValueError(f"unknown rasteriser backend '{backend}' (torch or moderngl)")


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
    """Like :func:`interpolate` but only the covered pixels: (N, C) in ``fragments.pixel_index``
    order (a transposed view of a contiguous (C, N) tensor)."""
    return interpolate_packed_t(attributes, faces, fragments).T


def interpolate_packed_t(attributes: torch.Tensor, faces: torch.Tensor, fragments: Fragments) -> torch.Tensor:
    """Interpolated attributes of the covered pixels, channels first: (C, N)."""
    faces = faces.to(attributes.device)
    corners = faces.index_select(0, fragments.face_index)  # (N, 3)
    if attributes.dim() == 2:
        flat_t = attributes.T  # (C, A)
    else:
        B, A, C = attributes.shape
        flat_t = attributes.reshape(B * A, C).T  # (C, B*A)
        corners = corners + (fragments.batch_index * A)[:, None]
    flat_t = flat_t.contiguous()  # small: per vertex, not per pixel
    b = fragments.bary_t.to(flat_t.dtype)
    out = None
    for k in range(3):
        term = flat_t.index_select(1, corners[:, k]) * b[k]  # (C, N): rows contiguous, fast
        out = term if out is None else out + term
    return out


def blend3(weights: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
    """(N, 3) weights, (N, 3, C) values → (N, C)."""
    return (vals * weights[:, :, None]).sum(1)


def scatter_pixels(values: torch.Tensor, fragments: Fragments, background: float = 0.0) -> torch.Tensor:
    """(N, C) values of the covered pixels → (B, H, W, C) image with ``background`` elsewhere."""
    B = fragments.batch_size
    H, W = fragments.image_size
    out = torch.full((B * H * W, values.shape[-1]), background, dtype=values.dtype, device=values.device)
    out.index_copy_(0, fragments.pixel_index, values)  # in place on a fresh tensor: no extra copy
    return out.reshape(B, H, W, -1)


def scatter_pixels_channels_first(values: torch.Tensor, fragments: Fragments, background: float = 0.0) -> torch.Tensor:
    """(N, C) values of the covered pixels (or their (C, N) transpose view) → contiguous
    (B, C, H, W) image, ``background`` elsewhere."""
    B = fragments.batch_size
    H, W = fragments.image_size
    C = values.shape[-1]
    batch = fragments.batch_index
    rem = fragments.pixel_index - batch * (H * W)
    idx = (batch * (C * H * W) + rem)[None, :] + (torch.arange(C, device=values.device) * (H * W))[:, None]  # (C, N)
    out = torch.full((B * C * H * W,), background, dtype=values.dtype, device=values.device)
    out.index_copy_(0, idx.reshape(-1), values.T.reshape(-1))
    return out.reshape(B, C, H, W)


def depth_map(screen_vertices: torch.Tensor, faces: torch.Tensor, fragments: Fragments, background: float = float("-inf")) -> torch.Tensor:
    """(B, H, W) screen z of the visible surface (differentiable), ``background`` elsewhere."""
    faces = faces.to(screen_vertices.device)
    z = screen_vertices[..., 2:3]
    packed = interpolate_packed(z, faces, fragments)
    return scatter_pixels(packed, fragments, background)[..., 0]


# -- pass 1: visibility ------------------------------------------------------------------------

def _visibility(sv: torch.Tensor, faces: torch.Tensor, H: int, W: int, cull: bool, perspective: bool) -> torch.Tensor:
    """Triangle id per pixel (B, H, W), -1 for background. Scanline spans, no gradients.

    Each valid triangle lists the pixel rows of its bounding box; on each row the span of pixel
    centres inside the triangle is solved in closed form from the three edge functions, so only
    (nearly) covered pixels are enumerated, even for long thin triangles. The closest triangle
    per pixel wins through ``scatter_reduce(amin)`` on ``(quantised depth << 25) | id``.
    """
    B, V, _ = sv.shape
    F = faces.shape[0]
    dev = sv.device
    f64 = torch.float64
    tri = sv.to(f64)[:, faces]  # (B, F, 3 corners, 3)
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    x0, x1, x2 = x.unbind(-1)
    y0, y1, y2 = y.unbind(-1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)  # (B, F), negative = facing the camera
    valid = (area.abs() > 1e-12) & torch.isfinite(area)
    if cull:
        valid &= area < 0
    if perspective:
        valid &= (z > 0).all(-1)
    xmin = torch.ceil(x.amin(-1) - 0.5).clamp(0, W)
    xmax = torch.floor(x.amax(-1) - 0.5).clamp(-1, W - 1)
    ymin = torch.ceil(y.amin(-1) - 0.5).clamp(0, H)
    ymax = torch.floor(y.amax(-1) - 0.5).clamp(-1, H - 1)
    bh = (ymax - ymin + 1).clamp_min(0)
    valid &= (xmax >= xmin) & (bh > 0)
    out = torch.full((B * H * W,), _EMPTY, dtype=torch.int64, device=dev)
    sel = torch.nonzero(valid.reshape(-1)).squeeze(1)
    if sel.numel() == 0:
        return out.new_full((B, H, W), -1)

    # Depth quantised per image over its vertices' depth range: q = 0 is the closest.
    zv = sv.to(f64)[..., 2]
    zmax = zv.amax(1)
    zmin = zv.amin(1)
    if perspective:
        zmin = torch.where(zv > 0, zv, torch.full_like(zv, float("inf"))).amin(1).clamp_max(zmax)
    zscale = (2.0**_DEPTH_BITS - 2) / (zmax - zmin).clamp_min(1e-12)
    zq = (zmax[:, None, None] - z) * zscale[:, None, None]  # (B, F, 3)

    # Affine functions of the pixel position f(px, py) = c + a px + b py, for the three
    # barycentrics (rows 0-2) and the quantised depth (row 3). Only the selected triangles.
    take = lambda t: t.reshape(B * F, *t.shape[2:]).index_select(0, sel)  # noqa: E731
    x0, x1, x2, y0, y1, y2, inv = (take(t) for t in (x0, x1, x2, y0, y1, y2, 1.0 / area))
    zq = take(zq)
    def edge(xa, ya, xb, yb):  # noqa: E306 — barycentric of the vertex opposite the edge a→b
        return torch.stack([((yb - ya) * xa - (xb - xa) * ya) * inv, -(yb - ya) * inv, (xb - xa) * inv], -1)
    e = torch.stack([edge(x1, y1, x2, y2), edge(x2, y2, x0, y0), edge(x0, y0, x1, y1)], 1)  # (T, 3, [c, a, b])
    plane = (e * zq[:, :, None]).sum(1)  # (T, 3)
    batch = torch.div(sel, F, rounding_mode="floor")
    face = sel - batch * F
    ymin_t, bh_t = take(ymin).long(), take(bh).long()
    xlo_t, xhi_t = take(xmin), take(xmax)

    # Bounded memory: triangles in chunks of at most _ROW_BUDGET box rows (one chunk normally).
    csum = torch.cumsum(bh_t, 0)
    total_rows = int(csum[-1])
    cuts = [0]
    if total_rows > _ROW_BUDGET:
        marks = torch.arange(_ROW_BUDGET, total_rows, _ROW_BUDGET, device=dev, dtype=csum.dtype)
        cuts += sorted(set(torch.searchsorted(csum, marks, right=True).tolist()) - {0, sel.numel()})
    cuts.append(sel.numel())
    for t0, t1 in zip(cuts[:-1], cuts[1:]):
        _scan_rows(out, e[t0:t1], plane[t0:t1], bh_t[t0:t1], ymin_t[t0:t1], xlo_t[t0:t1], xhi_t[t0:t1],
                   batch[t0:t1], face[t0:t1], H, W)
    ids = torch.where(out == _EMPTY, torch.full_like(out, -1), out & (2**_ID_BITS - 1))
    return ids.reshape(B, H, W)


def _scan_rows(out, e, plane, bh, ymin, xlo, xhi, batch, face, H, W) -> None:
    """Enumerate the covered pixels of some triangles row by row and z-test them into ``out``."""
    dev, f64 = e.device, torch.float64
    # Rows: one entry per (triangle, bounding-box row).
    rows = int(bh.sum())
    owner = torch.repeat_interleave(torch.arange(bh.numel(), device=dev), bh, output_size=rows)
    rstart = torch.cumsum(bh, 0) - bh
    row_y = ymin.index_select(0, owner) + (torch.arange(rows, device=dev) - rstart.index_select(0, owner))
    fy = row_y.to(f64) + 0.5
    er = e.index_select(0, owner)  # (R, 3, 3)
    cr = er[..., 0] + er[..., 2] * fy[:, None]  # (R, 3): barycentrics at x = 0 on this row
    ar = er[..., 1]
    # b_k = cr + ar x >= -eps on the span [lo, hi].
    t = (-_INSIDE_EPS - cr) / torch.where(ar == 0, torch.ones_like(ar), ar)
    lo = torch.where(ar > 0, t, torch.full_like(t, -float("inf"))).amax(1)
    hi = torch.where(ar < 0, t, torch.full_like(t, float("inf"))).amin(1)
    empty = ((ar == 0) & (cr < -_INSIDE_EPS)).any(1)
    jmin = torch.maximum(torch.ceil(lo - 0.5), xlo.index_select(0, owner))
    jmax = torch.minimum(torch.floor(hi - 0.5), xhi.index_select(0, owner))
    cnt = torch.where(empty, torch.zeros_like(jmin), (jmax - jmin + 1).clamp_min(0)).long()
    pl = plane.index_select(0, owner)  # (R, 3)
    q0 = pl[:, 0] + pl[:, 2] * fy + pl[:, 1] * 0.5  # depth at the centre of pixel column 0
    rowbase = batch.index_select(0, owner) * (H * W) + row_y * W
    # Per-row values gathered once per pixel: pixel counter → column offset, depth at column 0,
    # depth slope, flat pixel index of column 0, triangle id (all exact in float64).
    pstart = torch.cumsum(cnt, 0) - cnt
    packed = torch.stack([(jmin.long() - pstart).to(f64), q0, pl[:, 1], rowbase.to(f64), face.index_select(0, owner).to(f64)], 1)
    csum = torch.cumsum(cnt, 0)
    n_pix = int(csum[-1]) if rows else 0
    start = 0
    while start < n_pix:
        # Pixels in chunks of at most _PIXEL_BUDGET (whole rows; one chunk normally).
        r0 = int(torch.searchsorted(csum, torch.tensor(start, device=dev), right=True))
        r1 = int(torch.searchsorted(csum, torch.tensor(start + _PIXEL_BUDGET, device=dev), right=True))
        r1 = max(r1, r0 + 1)
        stop = int(csum[r1 - 1])
        prow = torch.repeat_interleave(torch.arange(r0, r1, device=dev), cnt[r0:r1], output_size=stop - start)
        g = packed.index_select(0, prow)
        col = torch.arange(start, stop, device=dev, dtype=f64) + g[:, 0]
        q = (g[:, 1] + g[:, 2] * col).clamp(0, 2**_DEPTH_BITS - 1).to(torch.int64)
        key = (q << _ID_BITS) | g[:, 4].to(torch.int64)
        pix = (g[:, 3] + col).to(torch.int64)
        out.scatter_reduce_(0, pix, key, reduce="amin")
        start = stop


# -- pass 2: barycentrics with gradients -------------------------------------------------------

def _barycentrics(sv: torch.Tensor, faces: torch.Tensor, batch, py, px, face_index: torch.Tensor, perspective: bool) -> torch.Tensor:
    """(3, N) barycentrics of the pixel centres (px + .5, py + .5) in their triangles."""
    B, V, _ = sv.shape
    fx = px.to(sv.dtype) + 0.5
    fy = py.to(sv.dtype) + 0.5
    corners = (faces.index_select(0, face_index) + (batch * V)[:, None]).T.reshape(-1)  # (3N) corner-major
    N = face_index.shape[0]
    # One coordinate at a time: (3, N) tensors with contiguous rows.
    x = sv[..., 0].reshape(B * V).index_select(0, corners).view(3, N)
    y = sv[..., 1].reshape(B * V).index_select(0, corners).view(3, N)
    bary = _Barycentric.apply(x, y, fx, fy)
    if perspective:
        z = sv[..., 2].reshape(B * V).index_select(0, corners).view(3, N)
        wz = bary * z
        bary = wz / wz.sum(0, keepdim=True)
    return bary


class _Barycentric(torch.autograd.Function):
    """Screen-space barycentrics (3, N) of points in triangles, with an analytic backward.

    With ``∇b_i`` the (constant) gradient of barycentric ``i`` w.r.t. the point, moving corner
    ``j`` changes it by ``∂b_i/∂p_j = -b_j ∇b_i``; so the backward is a few vector products
    instead of autograd's chain through ~20 elementwise ops.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
        x0, x1, x2 = x
        y0, y1, y2 = y
        inv = 1.0 / ((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0))
        # ∇b_i = (-(y_b - y_a), x_b - x_a) / area for the edge (a, b) opposite corner i.
        gx = torch.stack([y1 - y2, y2 - y0, y0 - y1]) * inv
        gy = torch.stack([x2 - x1, x0 - x2, x1 - x0]) * inv
        # b_i(P) = ∇b_i · (P - p_j) for a corner j on the opposite edge.
        b0 = gx[0] * (fx - x1) + gy[0] * (fy - y1)
        b1 = gx[1] * (fx - x2) + gy[1] * (fy - y2)
        bary = torch.stack([b0, b1, 1 - b0 - b1])
        ctx.save_for_backward(bary, gx, gy)
        return bary

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        bary, gx, gy = ctx.saved_tensors
        grad = grad.contiguous()
        g_x = grad[0] * gx[0] + grad[1] * gx[1] + grad[2] * gx[2]  # Σ_i g_i ∇b_i, x part (N,)
        g_y = grad[0] * gy[0] + grad[1] * gy[1] + grad[2] * gy[2]
        return -bary * g_x, -bary * g_y, None, None
