"""Triangle-mesh helpers: normals, edges, adjacency, simple test meshes.

Faces are (F, 3) int64, counter-clockwise seen from outside (normals point outwards).
"""

from __future__ import annotations

import math

import torch


def face_normals(vertices: torch.Tensor, faces: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """(B, V, 3), (F, 3) → (B, F, 3) face normals (unnormalised = 2 × area × unit normal)."""
    # index_select (backward: index_add) is much cheaper than advanced indexing on CPU.
    v0, v1, v2 = (vertices.index_select(1, faces[:, k]) for k in range(3))
    n = torch.cross(v1 - v0, v2 - v0, dim=-1)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-20) if normalize else n


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals, (B, V, 3). Differentiable."""
    fn = face_normals(vertices, faces, normalize=False)  # area-weighted, (B, F, 3)
    B, V = vertices.shape[:2]
    F = faces.shape[0]
    # One flat index_add over all corners of all meshes (much faster than per-dim-1 adds).
    offset = (torch.arange(B, device=faces.device) * V)[:, None, None]
    idx = (faces[None] + offset).transpose(1, 2).reshape(-1)  # (B*3*F,) batch, corner, face
    src = fn[:, None].expand(B, 3, F, 3).reshape(-1, 3)
    acc = torch.zeros(B * V, 3, dtype=vertices.dtype, device=vertices.device).index_add(0, idx, src)
    return torch.nn.functional.normalize(acc.view(B, V, 3), dim=-1, eps=1e-20)


def edges(faces: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges (E, 2), each row sorted (smaller index first)."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    return torch.unique(e, dim=0)


def vertex_adjacency(faces: torch.Tensor, n_vertices: int) -> torch.Tensor:
    """Sparse symmetric (V, V) adjacency matrix (float, 1 for every edge)."""
    e = edges(faces)
    idx = torch.cat([e, e.flip(1)], 0).T
    vals = torch.ones(idx.shape[1], dtype=torch.float32, device=faces.device)
    return torch.sparse_coo_tensor(idx, vals, (n_vertices, n_vertices)).coalesce()


def face_areas(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, F) triangle areas."""
    return 0.5 * face_normals(vertices, faces, normalize=False).norm(dim=-1)


# -- simple meshes for tests and examples ------------------------------------------------------

def uv_sphere(n_lat: int = 32, n_lon: int = 64, radius: float = 1.0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A UV sphere centred at the origin: vertices (V, 3), faces (F, 3) counter-clockwise outside."""
    verts = [[0.0, radius, 0.0]]
    for i in range(1, n_lat):
        theta = math.pi * i / n_lat
        for j in range(n_lon):
            phi = 2 * math.pi * j / n_lon
            verts.append([radius * math.sin(theta) * math.sin(phi), radius * math.cos(theta), radius * math.sin(theta) * math.cos(phi)])
    verts.append([0.0, -radius, 0.0])
    faces = []
    ring = lambda i, j: 1 + (i - 1) * n_lon + (j % n_lon)  # noqa: E731
    for j in range(n_lon):
        faces.append([0, ring(1, j), ring(1, j + 1)])
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces.append([a, c, d])
            faces.append([a, d, b])
    south = len(verts) - 1
    for j in range(n_lon):
        faces.append([south, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)])
    v = torch.tensor(verts, dtype=dtype)
    f = torch.tensor(faces, dtype=torch.int64)
    return v, _orient_outwards(v, f)


def cylinder(n_around: int = 64, n_height: int = 8, radius: float = 1.0, height: float = 2.0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """An open cylinder around the y axis (no caps): vertices (V, 3), faces (F, 3)."""
    verts = []
    for i in range(n_height + 1):
        y = height / 2 - height * i / n_height
        for j in range(n_around):
            phi = 2 * math.pi * j / n_around
            verts.append([radius * math.sin(phi), y, radius * math.cos(phi)])
    faces = []
    for i in range(n_height):
        for j in range(n_around):
            a = i * n_around + j
            b = i * n_around + (j + 1) % n_around
            c, d = a + n_around, b + n_around
            faces.append([a, c, d])
            faces.append([a, d, b])
    v = torch.tensor(verts, dtype=dtype)
    f = torch.tensor(faces, dtype=torch.int64)
    return v, _orient_outwards(v, f, axis_only=True)


def _orient_outwards(v: torch.Tensor, f: torch.Tensor, axis_only: bool = False) -> torch.Tensor:
    """Flip faces whose normal points towards the origin (or the y axis)."""
    n = face_normals(v[None], f, normalize=False)[0]
    c = v[f].mean(1)
    if axis_only:
        c = c.clone()
        c[:, 1] = 0
    flip = (n * c).sum(-1) < 0
    f = f.clone()
    f[flip] = f[flip][:, [0, 2, 1]]
    return f


def spherical_uv_layout(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-corner equirectangular UVs around the y axis with a proper seam (for test meshes).

    ``u = atan2(x, z) / 2π + 1/2``, ``v = 1/2 + asin(y / |p|) / π`` (v up). Returns
    ``uv_coords`` (3F, 2) and ``uv_faces`` (F, 3) like ``HeadModelData``.
    """
    p = vertices[faces]  # (F, 3, 3)
    r = p.norm(dim=-1).clamp_min(1e-12)
    u = torch.atan2(p[..., 0], p[..., 2]) / (2 * math.pi) + 0.5
    v = 0.5 + torch.asin((p[..., 1] / r).clamp(-1, 1)) / math.pi
    # Corners on the axis (poles) take the mean u of the others; unwrap across the seam.
    on_axis = p[..., [0, 2]].norm(dim=-1) < 1e-6 * r
    ref = u.masked_fill(on_axis, float("nan")).nanmedian(dim=1, keepdim=True).values
    u = torch.where(u - ref > 0.5, u - 1, torch.where(ref - u > 0.5, u + 1, u))
    n_ok = (~on_axis).sum(1, keepdim=True).clamp_min(1)
    mean_u = torch.where(on_axis, torch.zeros_like(u), u).sum(1, keepdim=True) / n_ok
    u = torch.where(on_axis, mean_u, u)
    # Keep every triangle inside [0, 1]: triangles across the seam shift as a whole.
    shift = torch.where(u.amax(1, keepdim=True) > 1, -torch.ones_like(ref), torch.zeros_like(ref))
    shift = torch.where(u.amin(1, keepdim=True) < 0, torch.ones_like(ref), shift)
    u = u + shift
    uv = torch.stack([u, v], -1).reshape(-1, 2).clamp(0, 1)
    uv_faces = torch.arange(faces.shape[0] * 3, dtype=torch.int64).reshape(-1, 3)
    return uv, uv_faces
