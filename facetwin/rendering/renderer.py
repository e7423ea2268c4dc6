"""One call that renders a textured, SH-lit mesh: what training and pictures use.

``MeshRenderer(faces, uv_coords, uv_faces).render(screen_vertices, vertices, albedo, lighting)``
returns the shaded image, its alpha mask, per-pixel normals, albedo and UVs, all channels-first
(B, C, H, W) and differentiable w.r.t. vertices, albedo texture and lighting. Images other than
``image`` and ``mask`` are assembled only when read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from facetwin.geometry.mesh import vertex_normals
from facetwin.rendering.rasterizer import Fragments, interpolate_packed_t, rasterize, scatter_pixels, scatter_pixels_channels_first
from facetwin.rendering.shading import sh_irradiance_packed
from facetwin.rendering.texture import uv_to_grid


@dataclass
class RenderOutput:
    """Per covered pixel values (packed, N rows in ``fragments.pixel_index`` order) and images.

    Images (channels first, zero background): ``image`` (B, 3, H, W) shaded colour
    ``albedo ⊙ irradiance``; ``mask`` (B, 1, H, W) float coverage; ``normals`` (B, 3, H, W) unit
    normals used for shading; ``albedo``; ``irradiance``; ``uv`` (B, H, W, 2).
    """

    fragments: Fragments
    packed_colour: torch.Tensor      # (N, 3)
    packed_normals: torch.Tensor     # (N, 3)
    packed_albedo: torch.Tensor      # (N, 3)
    packed_irradiance: torch.Tensor  # (N, 3)
    packed_uv: torch.Tensor | None   # (N, 2)
    _cache: dict = field(default_factory=dict, repr=False)

    def _img(self, name: str, packed: torch.Tensor) -> torch.Tensor:
        if name not in self._cache:
            self._cache[name] = scatter_pixels_channels_first(packed, self.fragments)
        return self._cache[name]

    @property
    def image(self) -> torch.Tensor:
        return self._img("image", self.packed_colour)

    @property
    def mask(self) -> torch.Tensor:
        return self.fragments.mask[:, None].to(self.packed_colour.dtype)

    @property
    def normals(self) -> torch.Tensor:
        return self._img("normals", self.packed_normals)

    @property
    def albedo(self) -> torch.Tensor:
        return self._img("albedo", self.packed_albedo)

    @property
    def irradiance(self) -> torch.Tensor:
        return self._img("irradiance", self.packed_irradiance)

    @property
    def uv(self) -> torch.Tensor:
        if self.packed_uv is None:
            B, (H, W) = self.fragments.batch_size, self.fragments.image_size
            return torch.zeros(B, H, W, 2, dtype=self.packed_colour.dtype, device=self.packed_colour.device)
        return scatter_pixels(self.packed_uv, self.fragments)


class MeshRenderer:
    """Renderer for one mesh topology (e.g. the head model) at one image size.

    Args:
        faces: (F, 3); uv_coords: (T, 2) v up; uv_faces: (F, 3).
        image_size: H or (H, W).
        convention: SH constants, "deca" (default) or "exact" (see :mod:`shading`).
        detail_uv: optional (uv_coords (T', 2), uv_faces (F, 3) with -1 outside the chart): the
            layout ``detail_normals`` are given in (the head model's detail UVs); pixels of
            triangles outside the chart keep the mesh normal. None: ``detail_normals`` use ``uv_*``.
    """

    def __init__(self, faces, uv_coords=None, uv_faces=None, image_size: int | tuple[int, int] = 224, convention: str = "deca",
                 detail_uv=None):
        self.faces = torch.as_tensor(faces, dtype=torch.int64)
        self.uv_coords = None if uv_coords is None else torch.as_tensor(uv_coords)
        self.uv_faces = None if uv_faces is None else torch.as_tensor(uv_faces, dtype=torch.int64)
        self.detail_uv_coords = self.detail_uv_faces = None
        if detail_uv is not None:
            self.detail_uv_coords = torch.as_tensor(detail_uv[0])
            self.detail_uv_faces = torch.as_tensor(detail_uv[1], dtype=torch.int64)
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.convention = convention

    @classmethod
    def from_head_model(cls, data, image_size=224, **kwargs) -> "MeshRenderer":
        """``detail_uv=True`` takes the model's detail UV layout for ``detail_normals``."""
        if kwargs.get("detail_uv") is True:
            kwargs["detail_uv"] = (data.detail_uv_coords, data.detail_uv_faces)
        return cls(data.faces, data.uv_coords, data.uv_faces, image_size, **kwargs)

    def to(self, device) -> "MeshRenderer":
        for name in ("faces", "uv_coords", "uv_faces", "detail_uv_coords", "detail_uv_faces"):
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
        dev, dtype = screen_vertices.device, screen_vertices.dtype
        faces = self.faces.to(dev)
        if fragments is None:
            fragments = rasterize(screen_vertices, faces, self.image_size, cull_backfaces, perspective_correct)
        N = fragments.pixel_index.shape[0]
        counts = fragments.counts()
        own_detail = detail_normals is not None and self.detail_uv_faces is not None
        need_uv = albedo is not None or (detail_normals is not None and not own_detail)
        if need_uv and self.uv_coords is None:
            raise ValueError("textures need uv_coords and uv_faces")
        # Packed values are channels first, (C, N): elementwise work on contiguous rows.
        uv = interpolate_packed_t(self.uv_coords.to(dev, dtype), self.uv_faces.to(dev), fragments) if need_uv else None
        if own_detail:
            duvf = self.detail_uv_faces.to(dev)
            duv = interpolate_packed_t(self.detail_uv_coords.to(dev, dtype), duvf.clamp_min(0), fragments)
            charted = (duvf >= 0).all(1).index_select(0, fragments.face_index)  # (N,)
            coarse = interpolate_packed_t(vertex_normals(vertices, faces), faces, fragments)
            n = torch.where(charted[None], _sample_packed(detail_normals, duv, counts), coarse)
        elif detail_normals is not None:
            n = _sample_packed(detail_normals, uv, counts)
        else:
            n = interpolate_packed_t(vertex_normals(vertices, faces), faces, fragments)
        n = n * (n * n).sum(0, keepdim=True).clamp_min(1e-24).rsqrt()  # F.normalize over dim 0 is slow on CPU
        if albedo is not None:
            alb = _sample_packed(albedo, uv, counts)
        else:
            alb = torch.full((3, N), 0.7, dtype=dtype, device=dev)
        irr = sh_irradiance_packed(n.T, lighting, counts, self.convention)  # (N, C) view of (C, N)
        return RenderOutput(fragments, (alb * irr.T).T, n.T, alb.T, irr, None if uv is None else uv.T)


def _sample_packed(texture: torch.Tensor, uv_t: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Sample a (B, C, S, S) texture at packed per-pixel UVs (2, N) → (C, N); ``counts`` pixels
    per image (covered pixels are sorted by image, so each image's pixels are one run)."""
    grid = uv_to_grid(uv_t.T).to(texture.dtype)  # (N, 2)
    parts = torch.split(grid, counts)
    out = [F.grid_sample(texture[b:b + 1], p[None, None], mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0]
           for b, p in enumerate(parts)]
    return torch.cat(out, 1)
