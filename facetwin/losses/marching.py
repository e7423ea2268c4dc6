"""The "w/o L_sil" ablation: FLAME-style dynamic contour landmarks ("landmark marching").

FLAME/RingNet/DECA replace the 17 contour landmarks by points taken from a table indexed by
the head's yaw: for each yaw bin the table stores, per contour landmark, a triangle and
barycentric coordinates on the side of the face that is outlined at that yaw. The head model
carries such a table (``dynamic_landmark_faces (Y, 17)``, ``dynamic_landmark_bary
(Y, 17, 3)``, ``dynamic_landmark_yaw (Y,)`` radians). The ablation then applies DECA's landmark
loss to all 68 points: the 17 marched contour points plus the 51 static inner ones.

Yaw convention: the rotation angle of the head (global ∘ neck joints) about the model's +y
axis (right-handed: positive turns the face towards +x, the subject's left), extracted like
DECA's ``rot_mat_to_euler``: ``atan2(-R[2,0], sqrt(R[0,0]² + R[1,0]²))``.
"""

from __future__ import annotations

import torch

from facetwin.geometry.rotation import axis_angle_to_matrix
from facetwin.losses.landmarks import CONTOUR, deca_landmark_weights, landmark_loss


def head_yaw(pose: torch.Tensor, joints=(0, 1)) -> torch.Tensor:
    """(B, 5, 3) axis-angle pose → (B,) yaw (radians) of the composed global ∘ neck rotation."""
    R = None
    for j in joints:  # parent first: R = R_global @ R_neck
        Rj = axis_angle_to_matrix(pose[:, j])
        R = Rj if R is None else R @ Rj
    return torch.atan2(-R[:, 2, 0], torch.sqrt(R[:, 0, 0] ** 2 + R[:, 1, 0] ** 2))


def yaw_bin(yaw: torch.Tensor, table_yaw: torch.Tensor) -> torch.Tensor:
    """(B,) yaw → (B,) index of the nearest table bin (yaws outside the table clamp to its ends)."""
    table_yaw = torch.as_tensor(table_yaw, dtype=yaw.dtype, device=yaw.device)
    return (yaw.detach()[:, None] - table_yaw[None]).abs().argmin(1)


def select_dynamic_contour(
    yaw: torch.Tensor, table_faces: torch.Tensor, table_bary: torch.Tensor, table_yaw: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The contour embedding for each image's yaw.

    Args:
        yaw: (B,) radians; table_faces: (Y, 17) long; table_bary: (Y, 17, 3); table_yaw: (Y,).
    Returns:
        faces (B, 17) long and bary (B, 17, 3).
    """
    b = yaw_bin(yaw, table_yaw).to(torch.as_tensor(table_faces).device)
    return torch.as_tensor(table_faces)[b], torch.as_tensor(table_bary)[b]


def dynamic_contour_points(
    vertices: torch.Tensor, faces: torch.Tensor, contour_faces: torch.Tensor, contour_bary: torch.Tensor
) -> torch.Tensor:
    """Per-image contour points on the mesh.

    Args:
        vertices: (B, V, D) posed vertices (D = 3) or projected vertices (D = 2: barycentric
            interpolation commutes with the affine orthographic projection).
        faces: (F, 3) long; contour_faces: (B, 17) long; contour_bary: (B, 17, 3).
    Returns:
        (B, 17, D).
    """
    B = vertices.shape[0]
    tri = faces.to(vertices.device)[contour_faces.to(vertices.device)]  # (B, 17, 3)
    corners = torch.gather(vertices, 1, tri.reshape(B, -1, 1).expand(-1, -1, vertices.shape[-1]))
    corners = corners.reshape(B, tri.shape[1], 3, vertices.shape[-1])
    return (corners * contour_bary.to(vertices)[..., None]).sum(-2)


def marching_contour_loss(
    dynamic_contour2d: torch.Tensor,
    gt_landmarks: torch.Tensor,
    crop_size,
    landmark_weight: torch.Tensor | None = None,
    deca_weighting: bool = True,
) -> torch.Tensor:
    """The ablation's contour term: L1 re-projection of the marched contour points (labels 1–17).

    Together with :func:`facetwin.losses.landmarks.inner_landmark_loss` this is DECA's 68-point
    landmark loss split into its contour and inner parts.

    Args:
        dynamic_contour2d: (B, 17, 2) projected marched contour points, crop pixels.
        gt_landmarks: (B, 68, 2) or (B, 17, 2) labels.
        landmark_weight: optional (B, 68) or (B, 17).
        deca_weighting: DECA's extra weight 2 on points 6–7 and 11–12.
    """
    idx = list(CONTOUR)
    gt = gt_landmarks[:, idx]
    w = None if landmark_weight is None else landmark_weight[..., idx]
    if deca_weighting:
        deca = deca_landmark_weights(gt.dtype, gt.device)[idx][None]
        w = deca if w is None else w * deca
    return landmark_loss(dynamic_contour2d, gt, crop_size, w)
