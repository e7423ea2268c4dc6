"""UV-space operations: attribute maps, image unwrapping, displacement maps and detail normals.

Texture layout as in :mod:`facetwin.rendering.texture` (row 0 = v 1). UV maps are channels-first
(B, C, S, S) tensors so that networks (UNet, MAE) can take them directly.

Usage::

    uvm = UVMapper(faces, uv_coords, uv_faces, size=256)     # rasterises the UV layout once
    pos = uvm.attribute_map(vertices)                          # (B, 3, S, S) positions
    tex, vis = uvm.unwrap(image, screen_vertices)              # (B, C, S, S), (B, 1, S, S)
    disp_v = uvm.displace_vertices(vertices, displacement)     # (B, V, 3)
    n_uv = uvm.detail_normal_map(vertices, displacement)       # (B, 3, S, S)
"""

from __future__ import annotations

import torch

from facetwin.geometry.mesh import vertex_normals
from facetwin.rendering.rasterizer import Fragments, rasterize, triangle_ids
from facetwin.rendering.texture import sample_image, sample_texture, uv_to_texel


class UVMapper:
    """The UV layout of a mesh rasterised once at one resolution.

    Args:
        faces: (F, 3) mesh triangles (vertex indices).
        uv_coords: (T, 2) UV corners in [0, 1]², v up.
        uv_faces: (F, 3) indices into ``uv_coords`` (same triangle order as ``faces``); rows
            of -1 mark triangles without UVs (outside the detail layout's chart): they still
            occlude when unwrapping and shape the normals, but have no texels, and their
            vertices get no value from :meth:`vertex_values` (0) unless another corner has one.
        size: UV map resolution S (S × S).
    Attributes:
        fragments: :class:`Fragments` of the UV layout (batch 1).
        mask: (1, 1, S, S) float, 1 where a triangle covers the texel.
    """

    def __init__(self, faces: torch.Tensor, uv_coords: torch.Tensor, uv_faces: torch.Tensor, size: int = 256):
        self.size = size
        self.faces = torch.as_tensor(faces, dtype=torch.int64)
        self.uv_coords = torch.as_tensor(uv_coords, dtype=torch.float32)
        self.uv_faces = torch.as_tensor(uv_faces, dtype=torch.int64)
        screen = torch.cat([uv_to_texel(self.uv_coords, size), torch.zeros_like(self.uv_coords[:, :1])], -1)
        self.has_uv = (self.uv_faces >= 0).all(1)
        charted = torch.nonzero(self.has_uv)[:, 0]
        fr = rasterize(screen[None], self.uv_faces[charted], size)
        # Texel triangles indexed into the whole mesh (``faces``).
        tri = torch.where(fr.triangle_ids >= 0, charted[fr.triangle_ids.clamp_min(0)], fr.triangle_ids)
        self.fragments: Fragments = Fragments(tri, fr.pixel_index, charted[fr.face_index], fr.bary_t, fr.batch_index)
        self.mask = self.fragments.mask[:, None].float()
        self._vertex_corner_pairs()
        self._neighbour_tables()
        tri = self.fragments.face_index
        self._texel_triangles = torch.unique(tri, return_inverse=True)  # (charted triangles (M,), texel → slot (N,))
        self._texel_vertices = self.faces[tri]  # (N, 3)

    @classmethod
    def from_head_model(cls, data, size: int = 256, layout: str = "head") -> "UVMapper":
        """From a :class:`facetwin.headmodel.HeadModelData`.

        ``layout="head"``: the model's own UVs (``uv_coords``/``uv_faces``, e.g. FLAME's);
        ``"detail"``: the face-sized symmetric detail layout (``detail_uv_*``, the open model).
        """
        from facetwin.errors import FacetwinError

        if layout == "detail":
            if not data.has_detail_uv:
                raise FacetwinError(f"head model '{data.name}' has no detail UV layout (the open head model has one)")
            uv, uvf = data.detail_uv_coords, data.detail_uv_faces
        elif layout == "head":
            if data.uv_coords is None or data.uv_faces is None:
                raise FacetwinError(f"head model '{data.name}' has no UVs")
            uv, uvf = data.uv_coords, data.uv_faces
        else:
            raise ValueError(f"layout must be 'head' or 'detail', not {layout!r}")
        return cls(torch.as_tensor(data.faces), torch.as_tensor(uv), torch.as_tensor(uvf), size)

    def to(self, device) -> "UVMapper":
        self.fragments = self.fragments.to(device)
        for name in ("faces", "uv_coords", "uv_faces", "has_uv", "mask", "_corner_vertex", "_corner_uv", "_vertex_count",
                     "_neighbour_index", "_neighbour_coef", "_neighbour_ok", "_texel_vertices"):
            setattr(self, name, getattr(self, name).to(device))
        self._texel_triangles = tuple(t.to(device) for t in self._texel_triangles)
        return self

    # -- attribute maps ------------------------------------------------------------------------
    def packed(self, attributes: torch.Tensor) -> torch.Tensor:
        """Per-vertex attributes at the covered texels: (B, V, C) or (V, C) → (B, N, C) (N texels)."""
        return self.packed_t(attributes).transpose(1, 2)

    def packed_t(self, attributes: torch.Tensor) -> torch.Tensor:
        """Channels-first variant of :meth:`packed`: (B, C, N)."""
        fr = self.fragments
        dev = attributes.device
        if attributes.dim() == 2:
            attributes = attributes[None]
        B, A, C = attributes.shape
        corners = self.faces.to(dev).index_select(0, fr.face_index.to(dev))  # (N, 3)
        flat_t = attributes.transpose(1, 2).reshape(B * C, A).contiguous()
        b = fr.bary_t.to(dev, flat_t.dtype)
        out = None
        for k in range(3):
            term = flat_t.index_select(1, corners[:, k]) * b[k]  # (B*C, N), contiguous rows
            out = term if out is None else out + term
        return out.view(B, C, -1)

    def scatter(self, packed: torch.Tensor, background: float = 0.0) -> torch.Tensor:
        """(B, N, C) texel values → (B, C, S, S) map with ``background`` outside the layout."""
        return self.scatter_t(packed.transpose(1, 2), background)

    def scatter_t(self, packed_t: torch.Tensor, background: float = 0.0) -> torch.Tensor:
        """(B, C, N) texel values → (B, C, S, S) map with ``background`` outside the layout."""
        B, C, N = packed_t.shape
        S = self.size
        out = torch.full((B, C, S * S), background, dtype=packed_t.dtype, device=packed_t.device)
        out.index_copy_(2, self.fragments.pixel_index.to(packed_t.device), packed_t)
        return out.view(B, C, S, S)

    def attribute_map(self, attributes: torch.Tensor, background: float = 0.0) -> torch.Tensor:
        """Rasterise per-vertex attributes into UV space.

        Args:
            attributes: (B, V, C) or (V, C): positions, normals, masks (as float), tension, ...
        Returns:
            (B, C, S, S), differentiable w.r.t. the attributes.
        """
        return self.scatter_t(self.packed_t(attributes), background)

    def vertex_values(self, uv_map: torch.Tensor) -> torch.Tensor:
        """Sample a (B, C, S, S) UV map at every vertex (averaged over its UV corners): (B, V, C)."""
        B = uv_map.shape[0]
        uv = self._corner_uv.to(uv_map)[None].expand(B, -1, -1)
        vals = sample_texture(uv_map, uv)  # (B, P, C)
        V = self._vertex_count.shape[0]
        acc = torch.zeros(B, V, uv_map.shape[1], dtype=vals.dtype, device=vals.device)
        acc = acc.index_add(1, self._corner_vertex.to(vals.device), vals)
        return acc / self._vertex_count.to(vals)[None, :, None].clamp_min(1)

    # -- unwrapping ----------------------------------------------------------------------------
    def unwrap(
        self,
        image: torch.Tensor,
        screen_vertices: torch.Tensor,
        image_fragments: Fragments | None = None,
        perspective_correct: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unwrap an image into UV space through a posed, projected mesh.

        Args:
            image: (B, C, H, W).
            screen_vertices: (B, V, 3) the mesh in the image's pixel frame (see
                :mod:`facetwin.geometry.camera`).
            image_fragments: the mesh rasterised into this image (made here when None).
        Returns:
            texture (B, C, S, S) and visibility (B, 1, S, S) in {0, 1}: 1 where the texel's
            triangle faces the camera and is the visible surface at the texel's image position
            (the triangle there is the texel's own or shares a vertex with it).
            Differentiable w.r.t. the image and the screen vertices.
        """
        B, C, H, W = image.shape
        if image_fragments is not None:
            ids = image_fragments.triangle_ids
        else:  # the visibility pass alone: unwrapping needs no barycentrics of the image
            ids = triangle_ids(screen_vertices, self.faces, (H, W), cull_backfaces=True, perspective_correct=perspective_correct)
        pts = self.packed(screen_vertices)  # (B, N, 3) texel positions in the image
        colour = sample_image(image, pts[..., :2])  # (B, N, C)
        with torch.no_grad():
            vis = self._visible(screen_vertices.detach(), pts[..., :2].detach(), ids)
        tex = self.scatter(colour * vis[..., None].to(colour))
        return tex, self.scatter(vis[..., None].to(image.dtype))

    def _visible(self, sv: torch.Tensor, pts: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(B, N) bool: the texel's triangle faces the camera and the triangle seen at its image
        position (``ids`` (B, H, W), :func:`triangle_ids`) is it or shares a vertex with it."""
        B, H, W = ids.shape
        dev = sv.device
        faces = self.faces.to(dev)
        tri_faces, tri_slot = self._texel_triangles[0].to(dev), self._texel_triangles[1].to(dev)
        corners = sv[:, faces[tri_faces]]  # (B, M, 3, 3): each charted triangle once, not per texel
        x, y = corners[..., 0], corners[..., 1]
        area = (x[..., 1] - x[..., 0]) * (y[..., 2] - y[..., 0]) - (x[..., 2] - x[..., 0]) * (y[..., 1] - y[..., 0])
        facing = (area < 0).index_select(1, tri_slot)  # (B, N)
        col = pts[..., 0].floor().long()
        row = pts[..., 1].floor().long()
        inside = (col >= 0) & (col < W) & (row >= 0) & (row < H)
        flat = row.clamp(0, H - 1) * W + col.clamp(0, W - 1)
        seen = ids.reshape(B, H * W).gather(1, flat)  # (B, N)
        seen_v = faces[seen.clamp_min(0)]  # (B, N, 3)
        own_v = self._texel_vertices.to(dev)  # (N, 3)
        shares = (seen_v[..., :, None] == own_v[:, None, :]).flatten(-2).any(-1)
        return facing & inside & (seen >= 0) & shares

    # -- displacement ------------------------------------------------------------------------
    def displace_vertices(self, vertices: torch.Tensor, displacement: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        """Move vertices along their normals by a UV displacement map.

        Args:
            vertices: (B, V, 3); displacement: (B, 1, S, S) (metres, along the normal);
            normals: (B, V, 3) unit normals (area-weighted vertex normals when None).
        Returns:
            (B, V, 3) displaced vertices.
        """
        if normals is None:
            normals = vertex_normals(vertices, self.faces.to(vertices.device))
        d = self.vertex_values(displacement)  # (B, V, 1)
        return vertices + d * normals

    def detail_normal_map(self, vertices: torch.Tensor, displacement: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        """Normals of the displaced surface in UV space (DECA's detail normals).

        The coarse surface positions and normals at the covered texels are moved by the
        displacement, and the normal is the cross product of the finite differences along u
        and v (central where both neighbours are covered, one-sided otherwise), oriented like the
        coarse normal. Texels without a neighbour along u or v keep the coarse normal. Computed
        on the covered texels only (:attr:`fragments`), with neighbour tables made once.

        Args:
            vertices: (B, V, 3) posed coarse vertices; displacement: (B, 1, S, S).
        Returns:
            (B, 3, S, S) unit normals (zeros outside the layout).
        """
        if normals is None:
            normals = vertex_normals(vertices, self.faces.to(vertices.device))
        pos = self.packed_t(vertices)  # (B, 3, N)
        nrm = _unit(self.packed_t(normals))
        B, N = pos.shape[0], pos.shape[2]
        nb = self._neighbour_index.to(pos.device)
        # index_select on 2-D views: on CPU it is ~20× slower along the last of three dimensions
        d = displacement.reshape(-1, displacement.shape[-2] * displacement.shape[-1])
        d = d.index_select(1, self.fragments.pixel_index.to(pos.device)).view(-1, 1, N)  # (B, 1, N)
        p = (pos + d * nrm).reshape(B * 3, N)
        g = p.index_select(1, nb).view(B, 3, 4, N)  # (a, b) along u, (a, b) along rows
        coef = self._neighbour_coef.to(p)
        du = (g[:, :, 0] - g[:, :, 1]) * coef[0]
        dv = (g[:, :, 3] - g[:, :, 2]) * coef[1]  # v grows upwards, rows downwards
        n = _unit(_cross(du, dv))
        n = torch.where((n * nrm).sum(1, keepdim=True) < 0, -n, n)
        return self.scatter_t(torch.where(self._neighbour_ok.to(pos.device), n, nrm))

    # -- helpers ---------------------------------------------------------------------------------
    def _vertex_corner_pairs(self) -> None:
        pairs = torch.stack([self.faces[self.has_uv].reshape(-1), self.uv_faces[self.has_uv].reshape(-1)], 1)
        pairs = torch.unique(pairs, dim=0)
        self._corner_vertex = pairs[:, 0]
        self._corner_uv = self.uv_coords[pairs[:, 1]]
        V = int(self.faces.max()) + 1
        self._vertex_count = torch.zeros(V).index_add(0, pairs[:, 0], torch.ones(pairs.shape[0]))

    def _neighbour_tables(self) -> None:
        """Finite differences on the covered texels as ``coef · (p[a] − p[b])``: ``_neighbour_index``
        (4 N,) = (a, b) along u (columns), then (a, b) along rows; ``_neighbour_coef`` (2, N):
        ½ central, 1 one-sided, 0 without a covered neighbour; ``_neighbour_ok`` (1, 1, N): both
        directions have one."""
        S = self.size
        pix = self.fragments.pixel_index
        N = pix.numel()
        slot = torch.full((S * S,), -1, dtype=torch.int64)
        slot[pix] = torch.arange(N)
        row, col = pix // S, pix % S
        own = torch.arange(N)
        tables, coefs = [], []
        for dr, dc in ((0, 1), (1, 0)):
            r1, c1, r0, c0 = row + dr, col + dc, row - dr, col - dc
            nxt = torch.where((r1 < S) & (c1 < S), slot[(r1.clamp(max=S - 1) * S + c1.clamp(max=S - 1))], -1)
            prv = torch.where((r0 >= 0) & (c0 >= 0), slot[(r0.clamp(min=0) * S + c0.clamp(min=0))], -1)
            has_n, has_p = nxt >= 0, prv >= 0
            tables += [torch.where(has_n, nxt, own), torch.where(has_p, prv, own)]
            coefs.append(torch.where(has_n & has_p, 0.5, torch.where(has_n | has_p, 1.0, 0.0)))
        self._neighbour_index = torch.stack(tables).reshape(-1)  # (4 N,): one gather for all four
        self._neighbour_coef = torch.stack(coefs)[:, None, None]  # (2, 1, 1, N)
        self._neighbour_ok = (coefs[0] > 0) & (coefs[1] > 0)
        self._neighbour_ok = self._neighbour_ok.view(1, 1, N)


def _unit(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``F.normalize(x, dim=1, eps=eps)`` of (B, 3, N) vectors, as a sum of squares: on CPU the
    library's norm over a strided dimension is ~35× slower. Zero vectors stay zero, with finite
    gradients (the clamp acts before the square root)."""
    return x / (x * x).sum(1, keepdim=True).clamp_min(eps * eps).sqrt()


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.cross(a, b, dim=1)`` of (B, 3, N) vectors, by components (~10× faster on CPU)."""
    a0, a1, a2 = a.unbind(1)
    b0, b1, b2 = b.unbind(1)
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], 1)
