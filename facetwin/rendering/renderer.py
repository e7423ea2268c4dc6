"""One call that renders a textured, SH-lit mesh: what training and pictures use.

``MeshRenderer(faces, uv_coords, uv_faces).render(screen_vertices, vertices, albedo, lighting)``
returns the shaded image, its alpha mask, per-pixel normals, albedo and UVs, all channels-first
(B, C, H, W) and differentiable w.r.t. vertices, albedo texture and lighting.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from facetwin.geometry.mesh import vertex_normals
from facetwin.rendering.rasterizer import Fragments, interpolate_packed, rasterize, scatter_pixels
from facetwin.rendering.shading import sh_irradiance
from facetwin.rendering.texture import sample_texture


@dataclass
class RenderOutput:
    image: torch.Tensor        # (B, 3, H, W) shaded colour (albedo ⊙ irradiance), 0 in the background
    mask: torch.Tensor         # (B, 1, H, W) float, 1 where the mesh covers the pixel
    normals: torch.Tensor      # (B, 3, H, W) unit normals used for shading (detail ones if given)
    albedo: torch.Tensor       # (B, 3, H, W) sampled albedo
    irradiance: torch.Tensor   # (B, 3, H, W) SH irradiance (the shading alone)
    uv: torch.Tensor           # (B, H, W, 2) UV of each pixel (0 in the background)
    fragments: Fragments


class MeshRenderer:
    """Renderer for one mesh topology (e.g. the head model) at one image size.

    Args:
        faces: (F, 3); uv_coords: (T, 2) v up; uv_faces: (F, 3).
        image_size: H or (H, W).
        convention: SH constants, "deca" (default) or "exact" (see :mod:`shading`).
    """

    def __init__(self, faces, uv_coords=None, uv_faces=None, image_size: int | tuple[int, int] = 224, convention: str = "deca"):
        self.faces = torch.as_tensor(faces, dtype=torch.int64)
        self.uv_coords = None if uv_coords is None else torch.as_tensor(uv_coords, dtype=torch.float32)
        self.uv_faces = None if uv_faces is None else torch.as_tensor(uv_faces, dtype=torch.int64)
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.convention = convention

    @classmethod
    def from_head_model(cls, data, image_size=224, **kwargs) -> "MeshRenderer":
        return cls(data.faces, data.uv_coords, data.uv_faces, image_size, **kwargs)

    def to(self, device) -> "MeshRenderer":
        for name in ("faces", "uv_coords", "uv_faces"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self

    def rasterize(self, screen_vertices: torch.Tensor, cull_backfaces: bool = True, perspective_correct: bool = False) -> Fragments:
        return rasterize(screen_vertices, self.faces.to(screen_vertices.device), self.image_size, cull_backfaces, perspective_correct)

    def render(
        self,
        screen_vertices: torch.Tensor,
        vertices: torch.Tensor,
        albedo: torch.Tensor | None,
        lighting: torch.Tensor,
        detail_normals: torch.Tensor | None = None,
        fragments: Fragments | None = None,
        cull_backfaces: bool = True,
        perspective_correct: bool = False,
    ) -> RenderOutput:
        """Render ``albedo ⊙ Σ_k l_k H_k(n)``.

        Args:
            screen_vertices: (B, V, 3) from a camera (pixel x, y, screen z).
            vertices: (B, V, 3) posed vertices in the lighting frame (model frame), for normals.
            albedo: (B, 3, S, S) UV albedo texture, or None for a uniform grey (0.7) surface.
            lighting: (B, 9, 3) SH coefficients.
            detail_normals: optional (B, 3, S, S) UV normal map (from
                :meth:`UVMapper.detail_normal_map`), used instead of the mesh normals.
            fragments: reuse a rasterisation of the same screen vertices.
        """
        dev = screen_vertices.device
        faces = self.faces.to(dev)
        if fragments is None:
            fragments = rasterize(screen_vertices, faces, self.image_size, cull_backfaces, perspective_correct)
        B = screen_vertices.shape[0]
        N = fragments.pixel_index.shape[0]
        need_uv = albedo is not None or detail_normals is not None
        if need_uv and self.uv_coords is None:
            raise ValueError("textures need uv_coords and uv_faces")
        uv_packed = interpolate_packed(self.uv_coords.to(dev), self.uv_faces.to(dev), fragments) if need_uv else None
        bidx = fragments.batch_index
        if detail_normals is not None:
            n = _sample_packed(detail_normals, uv_packed, bidx, B)
        else:
            vn = vertex_normals(vertices, faces)
            n = interpolate_packed(vn, faces, fragments)
        n = F.normalize(n, dim=-1, eps=1e-12)
        if albedo is not None:
            alb = _sample_packed(albedo, uv_packed, bidx, B)
        else:
            alb = torch.full((N, 3), 0.7, dtype=screen_vertices.dtype, device=dev)
        # Irradiance per covered pixel: basis (N, 9) times that pixel's batch lighting.
        from facetwin.rendering.shading import sh_basis

        basis = sh_basis(n, self.convention)
        irr = torch.einsum("nk,nkc->nc", basis, lighting.to(basis.dtype).index_select(0, bidx))
        colour = alb * irr
        to_img = lambda t, bg=0.0: scatter_pixels(t, fragments, bg).permute(0, 3, 1, 2)  # noqa: E731
        uv_img = scatter_pixels(uv_packed, fragments) if uv_packed is not None else torch.zeros(B, *self.image_size, 2, device=dev)
        return RenderOutput(
            image=to_img(colour),
            mask=fragments.mask[:, None].to(colour.dtype),
            normals=to_img(n),
            albedo=to_img(alb),
            irradiance=to_img(irr),
            uv=uv_img,
            fragments=fragments,
        )


def _sample_packed(texture: torch.Tensor, uv_packed: torch.Tensor, bidx: torch.Tensor, B: int) -> torch.Tensor:
    """Sample a (B, C, S, S) texture at packed per-pixel UVs (N, 2) belonging to batch ``bidx``."""
    if B == 1:
        return sample_texture(texture, uv_packed[None])[0]
    # Pad the ragged per-image pixel lists into (B, Nmax, 2) so grid_sample sees one batch.
    counts = torch.bincount(bidx, minlength=B)
    nmax = int(counts.max()) if counts.numel() else 0
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(bidx.shape[0], device=bidx.device) - start[bidx]
    grid = torch.zeros(B, max(nmax, 1), 2, dtype=uv_packed.dtype, device=uv_packed.device)
    grid = grid.index_put((bidx, slot), uv_packed)
    vals = sample_texture(texture, grid)  # (B, Nmax, C)
    return vals[bidx, slot]
