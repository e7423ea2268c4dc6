"""Silhouette vertices (the paper's Eq. 1 / Fig. 4) and landmark occlusion from normals.

A vertex lies on the outline when it ends an edge whose two vertex normals point to opposite
sides of the view direction (opposite z-signs for the orthographic camera, whose view direction
is +z in the model frame). The head model's candidate mask removes the nose and ears.
"""

from __future__ import annotations

import torch

from facetwin.geometry.mesh import edges as mesh_edges
from facetwin.geometry.mesh import vertex_normals


def facing_values(vertices: torch.Tensor, faces: torch.Tensor, view_directions: torch.Tensor | None = None, normals: torch.Tensor | None = None) -> torch.Tensor:
    """(B, V) ``n · d`` per vertex: the normal's z (orthographic) or its dot with the direction
    towards the camera (``view_directions`` (B, V, 3), e.g. ``PerspectiveCamera.view_directions``)."""
    if normals is None:
        normals = vertex_normals(vertices, faces)
    if view_directions is None:
        return normals[..., 2]
    return (normals * view_directions).sum(-1)


def silhouette_vertices(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    candidates: torch.Tensor | None = None,
    view_directions: torch.Tensor | None = None,
    edges: torch.Tensor | None = None,
) -> torch.Tensor:
    """Vertices on the outline of a posed mesh.

    Args:
        vertices: (B, V, 3) posed vertices in the camera-aligned model frame (z towards the
            orthographic camera).
        faces: (F, 3).
        candidates: (V,) bool region allowed on the outline (``HeadModelData.silhouette_candidates``:
            nose and ears excluded); all vertices when None.
        view_directions: (B, V, 3) for a perspective camera (see :func:`facing_values`).
        edges: (E, 2) precomputed :func:`facetwin.geometry.mesh.edges` (saves time in loops).
    Returns:
        (B, V) bool mask, no gradient (select vertices with it, then take the loss on their
        projected positions).
    """
    with torch.no_grad():
        faces = faces.to(vertices.device)
        e = mesh_edges(faces) if edges is None else edges.to(vertices.device)
        front = facing_values(vertices, faces, view_directions) > 0  # (B, V)
        flip = front[:, e[:, 0]] != front[:, e[:, 1]]  # (B, E)
        B, V = front.shape
        hits = torch.zeros(B, V, dtype=torch.int32, device=vertices.device)
        f = flip.to(torch.int32)
        hits.index_add_(1, e[:, 0], f)
        hits.index_add_(1, e[:, 1], f)
        mask = hits > 0
        if candidates is not None:
            mask &= torch.as_tensor(candidates, dtype=torch.bool, device=vertices.device)[None]
        return mask


def unoccluded_vertices(screen_vertices: torch.Tensor, faces: torch.Tensor, image_size: int, tolerance: torch.Tensor | float,
                        window: int = 3, fragments=None) -> torch.Tensor:
    """Vertices that no other part of the surface hides (z-buffer test).

    A concave fold (the inside of an eye socket, the cheek behind the nose at strong yaw) has
    normals that change sign just like the outline does, so :func:`silhouette_vertices` reports
    it too; on the image it lies behind nearer surface. A vertex counts as unoccluded when its
    depth reaches the *farthest* visible depth within ``window``×``window`` pixels around it,
    minus ``tolerance``: a vertex on the outline always has background or its own surface there,
    a hidden fold has the nearer surface all around.

    Args:
        screen_vertices: (B, V, 3) pixel x, y and screen depth (larger = closer), e.g.
            :func:`facetwin.geometry.camera.orthographic_screen_vertices`.
        faces: (F, 3). image_size: side of the z-buffer in the same pixels.
        tolerance: depth slack in screen-depth units, float or (B,).
        fragments: a rasterisation of these screen vertices at ``image_size`` to reuse (e.g. the
            render's, back faces culled: the nearest surface of a closed head faces the camera).
    Returns:
        (B, V) bool, no gradient.
    """
    from facetwin.rendering.rasterizer import depth_map, rasterize

    with torch.no_grad():
        sv = screen_vertices.detach().float()
        B, V, _ = sv.shape
        if fragments is None:
            fragments = rasterize(sv, faces, image_size)
        depth = depth_map(sv, faces, fragments)  # (B, H, W), -inf = background
        far = -torch.nn.functional.max_pool2d(-depth[:, None], window, stride=1, padding=window // 2)[:, 0]
        px = sv[..., :2].floor().long().clamp(0, image_size - 1)
        at = far[torch.arange(B, device=sv.device)[:, None], px[..., 1], px[..., 0]]  # (B, V)
        tol = torch.as_tensor(tolerance, dtype=sv.dtype, device=sv.device).reshape(-1, 1)
        return sv[..., 2] >= at - tol


def nearest_silhouette_vertex(projected: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Index of the silhouette vertex nearest to each 2D target (e.g. the 17 contour landmarks).

    The ONE implementation (L_sil's matching and the coarse model's contour at inference). The
    distance is L1, Eq. 1's d. Chosen without gradient (an arg-min).

    Args:
        projected: (B, V, 2) projected vertices; mask: (B, V) bool from :func:`silhouette_vertices`;
        targets: (B, K, 2).
    Returns:
        (B, K) int64 vertex indices (-1 where an image has no silhouette vertex).
    """
    with torch.no_grad():
        d = torch.cdist(targets, projected.to(targets.dtype), p=1)  # (B, K, V)
        d = d.masked_fill(~mask.to(torch.bool)[:, None, :], float("inf"))
        idx = d.argmin(-1)
        return torch.where(mask.to(torch.bool).any(1)[:, None], idx, torch.full_like(idx, -1))


def landmark_normal_z(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    landmark_faces: torch.Tensor,
    landmark_bary: torch.Tensor,
    view_directions: torch.Tensor | None = None,
    normals: torch.Tensor | None = None,
) -> torch.Tensor:
    """Facing value of each landmark: the z of its interpolated unit normal (orthographic), or the
    dot with the view direction at its triangle's corners (perspective).

    Args:
        vertices: (B, V, 3); faces: (F, 3); landmark_faces: (L,); landmark_bary: (L, 3).
    Returns:
        (B, L); a landmark is occluded (self-occluded by the head turning away) where < 0.
        Differentiable.
    """
    faces = faces.to(vertices.device)
    if normals is None:
        normals = vertex_normals(vertices, faces)
    lf = faces[torch.as_tensor(landmark_faces, device=vertices.device)]  # (L, 3)
    w = torch.as_tensor(landmark_bary, device=vertices.device).to(vertices.dtype)
    n = (normals[:, lf] * w[None, :, :, None]).sum(2)
    n = torch.nn.functional.normalize(n, dim=-1, eps=1e-12)
    if view_directions is None:
        return n[..., 2]
    d = (view_directions[:, lf] * w[None, :, :, None]).sum(2)
    return (n * torch.nn.functional.normalize(d, dim=-1, eps=1e-12)).sum(-1)


def landmark_occluded(vertices, faces, landmark_faces, landmark_bary, view_directions=None) -> torch.Tensor:
    """(B, L) bool: the landmark's surface normal points away from the camera."""
    return landmark_normal_z(vertices, faces, landmark_faces, landmark_bary, view_directions) < 0
