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


def head_yaw(pose: torch.Tensor, joints=(0, 1)) -> torch.Tensor:
    """(B, J, 3) axis-angle pose → (B,) yaw (radians) of the composed rotation of ``joints``
    (global ∘ neck by default; joints the pose does not have are skipped).

    The ONE yaw convention of facetwin: the heading of the face's forward axis, the angle of
    R·(0, 0, 1) about +y, ``atan2(R[0, 2], R[2, 2])`` — positive turns the face towards +x (the
    subject's left). The marching-contour tables (``dynamic_landmark_yaw``) use it.
    """
    R = None
    for j in joints:  # parent first: R = R_global @ R_neck
        if j >= pose.shape[1]:
            continue
        Rj = axis_angle_to_matrix(pose[:, j])
        R = Rj if R is None else R @ Rj
    return torch.atan2(R[:, 0, 2], R[:, 2, 2])
