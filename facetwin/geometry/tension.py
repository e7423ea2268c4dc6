"""Facial tension (Eq. 3 of the paper): per-vertex compression (+) or stretch (−) of the skin.

For vertex i with incident edges e_j in the current mesh S = S(β, θ, ψ) and e'_j in the rest
mesh S' = S(β, 0, 0),

    t_i(S, S') = 1/E_i Σ_j (exp(k‖e'_j‖) − exp(k‖e_j‖)) / (exp(k‖e'_j‖) + exp(k‖e_j‖))
               = 1/E_i Σ_j tanh(k (‖e'_j‖ − ‖e_j‖) / 2),

written with tanh so large k‖e‖ does not overflow. Antisymmetric (t(S', S) = −t(S, S')),
bounded (|t| < 1), zero at rest, positive where edges shorten (compression).

The paper fixes k but does not give it. Edge lengths here are in metres, so k is in 1/m:
``DEFAULT_K = 2000`` makes a 1 mm shortening of every edge at a vertex t ≈ 0.76 and 0.1 mm
t ≈ 0.1, which spans the range of the open head model's expressions (a full brow raise reaches
t ≈ 0.2 to 0.5 on the forehead; ``tests/test_tension.py`` measures it).
"""

from __future__ import annotations

import torch

from facetwin.geometry.mesh import edges

DEFAULT_K = 2000.0  # 1/m


def tension(vertices: torch.Tensor, rest_vertices: torch.Tensor, faces: torch.Tensor, k: float = DEFAULT_K,
            edge_index: torch.Tensor | None = None) -> torch.Tensor:
    """Per-vertex tension of ``vertices`` (S) against ``rest_vertices`` (S').

    Args:
        vertices: (B, V, 3) or (V, 3) current mesh, metres.
        rest_vertices: same shape (or broadcastable (V, 3)): the same identity at zero pose and
            expression.
        faces: (F, 3) triangles; edge_index: (E, 2) unique edges (computed from faces if None).
        k: the fixed scale (1/m).
    Returns:
        (B, V) (or (V,)) in (−1, 1); vertices without edges get 0. Differentiable.
    """
    squeeze = vertices.dim() == 2
    if squeeze:
        vertices = vertices[None]
    if rest_vertices.dim() == 2:
        rest_vertices = rest_vertices[None]
    e = edges(faces.to(vertices.device)) if edge_index is None else edge_index.to(vertices.device)
    cur = (vertices.index_select(1, e[:, 0]) - vertices.index_select(1, e[:, 1])).norm(dim=-1)           # (B, E)
    rest = (rest_vertices.index_select(1, e[:, 0]) - rest_vertices.index_select(1, e[:, 1])).norm(dim=-1)  # (B', E)
    t_edge = torch.tanh(0.5 * k * (rest - cur))                                                           # (B, E)
    B, V = vertices.shape[0], vertices.shape[1]
    both = torch.cat([e[:, 0], e[:, 1]])
    acc = torch.zeros(B, V, dtype=t_edge.dtype, device=t_edge.device).index_add(1, both, torch.cat([t_edge, t_edge], 1))
    deg = torch.zeros(V, dtype=t_edge.dtype, device=t_edge.device).index_add(0, both, torch.ones_like(both, dtype=t_edge.dtype))
    t = acc / deg.clamp_min(1)
    return t[0] if squeeze else t
