"""FLAME-style dynamic contour ("landmark marching"): the head model's yaw-indexed table of
contour-landmark embeddings, selected for a pose. The ONE implementation, used by the coarse
model (``contour="marching"``), the landmark fitter and the "w/o L_sil" ablation.

The table (``HeadModelData.dynamic_landmark_faces (Y, 17)``, ``dynamic_landmark_bary (Y, 17, 3)``,
``dynamic_landmark_yaw (Y,)`` radians) stores per yaw bin a triangle and barycentrics for each
contour landmark on the side of the face that is outlined at that yaw. Yaw: :func:`head_yaw`.
"""

from __future__ import annotations

import numpy as np
import torch

from facetwin.geometry.rotation import head_yaw  # noqa: F401 (re-exported: the one yaw)

__all__ = ["head_yaw", "yaw_bin", "select_dynamic_contour", "dynamic_contour_points", "contour_table"]


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


def contour_table(data, dtype=torch.float32, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(faces (Y, 17) long, bary (Y, 17, 3), yaw (Y,)) of a head model's data, or None without a table."""
    if data.dynamic_landmark_faces is None:
        return None
    return (torch.as_tensor(np.asarray(data.dynamic_landmark_faces), dtype=torch.int64, device=device),
            torch.as_tensor(np.asarray(data.dynamic_landmark_bary), dtype=dtype, device=device),
            torch.as_tensor(np.asarray(data.dynamic_landmark_yaw), dtype=dtype, device=device))
