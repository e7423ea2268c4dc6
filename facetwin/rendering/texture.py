"""Texture look-ups in UV space (bilinear, differentiable w.r.t. the texture and the UVs).

UV convention: ``(u, v)`` in [0, 1]², v up (OpenGL, as in FLAME's ``vt`` and
``HeadModelData.uv_coords``). A UV map / texture image is a (B, C, S, S) tensor (or an H×W PNG)
whose **row 0 is the top, v = 1**, column 0 is u = 0: texel ``(row i, column j)`` has its centre
at ``u = (j + 0.5) / S``, ``v = 1 - (i + 0.5) / S``. So a texture looks upright when saved as a
PNG, as in DECA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def uv_to_grid(uv: torch.Tensor) -> torch.Tensor:
    """(..., 2) UVs (v up) → (..., 2) ``grid_sample`` coordinates in [-1, 1] (y down)."""
    return torch.stack([2 * uv[..., 0] - 1, 1 - 2 * uv[..., 1]], -1)


def uv_to_texel(uv: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(..., 2) UVs → (..., 2) continuous texel coordinates (x = column, y = row, corner origin)."""
    Hs, Ws = (size, size) if isinstance(size, int) else size
    return torch.stack([uv[..., 0] * Ws, (1 - uv[..., 1]) * Hs], -1)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor, mode: str = "bilinear", padding_mode: str = "border") -> torch.Tensor:
    """Sample a texture at UVs.

    Args:
        texture: (B, C, S_h, S_w) (row 0 = v 1, see module docstring).
        uv: (B, ..., 2) UVs in [0, 1]², v up (e.g. (B, H, W, 2) per pixel or (B, N, 2)).
    Returns:
        (B, ..., C), differentiable w.r.t. ``texture`` and ``uv``.
    """
    B = uv.shape[0]
    grid = uv_to_grid(uv).reshape(B, 1, -1, 2).to(texture.dtype)
    out = F.grid_sample(texture, grid, mode=mode, padding_mode=padding_mode, align_corners=False)  # (B, C, 1, P)
    return out[:, :, 0].transpose(1, 2).reshape(*uv.shape[:-1], texture.shape[1])


def sample_image(image: torch.Tensor, points: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros") -> torch.Tensor:
    """Sample an image at pixel coordinates (the project's convention: corner origin, y down).

    Args:
        image: (B, C, H, W).
        points: (B, ..., 2) pixel coordinates (x, y); pixel (i, j) has its centre at (j+.5, i+.5).
    Returns:
        (B, ..., C).
    """
    B, C, H, W = image.shape
    g = torch.stack([2 * points[..., 0] / W - 1, 2 * points[..., 1] / H - 1], -1)
    out = F.grid_sample(image, g.reshape(B, 1, -1, 2).to(image.dtype), mode=mode, padding_mode=padding_mode, align_corners=False)
    return out[:, :, 0].transpose(1, 2).reshape(*points.shape[:-1], C)
