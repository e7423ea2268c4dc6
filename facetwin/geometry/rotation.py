"""Axis-angle rotations (Rodrigues), differentiable and safe at zero angle."""

from __future__ import annotations

import torch


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from axis-angle vectors.

    Args:
        axis_angle: (..., 3) rotation vectors (radians).
    Returns:
        (..., 3, 3) rotation matrices.
    """
    angle2 = (axis_angle * axis_angle).sum(-1, keepdim=True)  # (..., 1)
    small = angle2 < 1e-8
    safe2 = torch.where(small, torch.ones_like(angle2), angle2)
    angle = safe2.sqrt()
    # Taylor series near zero keep the gradient finite.
    a = torch.where(small, 1 - angle2 / 6, torch.sin(angle) / angle)
    b = torch.where(small, 0.5 - angle2 / 24, (1 - torch.cos(angle)) / safe2)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(k)
    return eye + a[..., None] * k + b[..., None] * (k @ k)
