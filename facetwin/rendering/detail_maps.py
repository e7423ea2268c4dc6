"""Maps in the detail UV layout: the tension map T_UV, the mirror of a map, the fine part of a map.

The open head model's detail layout (``HeadModelData.detail_uv_*``) is left–right symmetric:
a vertex and its mirror partner sit at ``u`` and ``1 − u`` at the same ``v``. Texel column j has
its centre at ``u = (j + 0.5) / S`` (:mod:`facetwin.rendering.texture`), so the mirror of a
(B, C, S, S) detail map is exactly its horizontal flip (:func:`mirror_map`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from facetwin.geometry.tension import DEFAULT_K, tension
from facetwin.rendering.uv import UVMapper


def tension_map(mapper: UVMapper, vertices: torch.Tensor, rest_vertices: torch.Tensor, k: float = DEFAULT_K,
                edge_index: torch.Tensor | None = None) -> torch.Tensor:
    """T_UV (Eq. 3 rasterised): (B, V, 3) posed mesh S, (B, V, 3) or (V, 3) rest mesh S' = S(β, 0, 0)
    → (B, 1, S, S) tension in (−1, 1), 0 outside the layout. Differentiable."""
    t = tension(vertices, rest_vertices, mapper.faces.to(vertices.device), k, edge_index)  # (B, V)
    return mapper.attribute_map(t[..., None])


def mirror_map(uv_map: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) map in the symmetric detail layout → the map of the mirrored face (u → 1 − u)."""
    return torch.flip(uv_map, dims=(-1,))


def highpass_map(uv_map: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """The fine part of a (B, C, S, S) map on ``mask`` (1, 1, S, S) or (B, 1, S, S): the map minus its
    Gaussian blur of standard deviation ``sigma`` (UV units), blurred as a normalised convolution
    (blur(x · m) / blur(m)) so the layout's border does not pull the blur towards zero; 0 off the
    mask. Differentiable; ``sigma <= 0`` returns the map (masked) as it is.

    A displacement map keeps its wrinkles (a 15 mm wavelength passes at 99 % with σ = 0.03 UV ≈ 8 mm
    on the open head model's face) and loses the centimetre-wide blobs with which it would otherwise
    correct the coarse shape and albedo (a 60 mm wavelength keeps 30 %)."""
    m = mask.to(uv_map.dtype)
    if sigma <= 0:
        return uv_map * m
    S = uv_map.shape[-1]
    s_px = sigma * S
    r = max(1, int(math.ceil(3 * s_px)))
    x = torch.arange(-r, r + 1, dtype=uv_map.dtype, device=uv_map.device)
    g = torch.exp(-0.5 * (x / s_px) ** 2)
    g = g / g.sum()

    def blur(t: torch.Tensor) -> torch.Tensor:
        B, C = t.shape[:2]
        t = t.reshape(B * C, 1, S, S)
        t = F.conv2d(F.pad(t, (r, r, 0, 0)), g.view(1, 1, 1, -1))
        t = F.conv2d(F.pad(t, (0, 0, r, r)), g.view(1, 1, -1, 1))
        return t.reshape(B, C, S, S)

    low = blur(uv_map * m) / blur(m).clamp_min(1e-6)
    return (uv_map - low) * m
