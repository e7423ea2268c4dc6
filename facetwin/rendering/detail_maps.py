"""Maps in the detail UV layout: the tension map T_UV and the mirror of a map.

The open head model's detail layout (``HeadModelData.detail_uv_*``) is left–right symmetric:
a vertex and its mirror partner sit at ``u`` and ``1 − u`` at the same ``v``. Texel column j has
its centre at ``u = (j + 0.5) / S`` (:mod:`facetwin.rendering.texture`), so the mirror of a
(B, C, S, S) detail map is exactly its horizontal flip (:func:`mirror_map`).
"""

from __future__ import annotations

import torch

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
