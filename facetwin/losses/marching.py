"""The "w/o L_sil" ablation: FLAME-style dynamic contour landmarks ("landmark marching").

FLAME/RingNet/DECA replace the 17 contour landmarks by points taken from a table indexed by
the head's yaw: for each yaw bin the table stores, per contour landmark, a triangle and
barycentric coordinates on the side of the face that is outlined at that yaw. The head model
carries such a table (``dynamic_landmark_faces (Y, 17)``, ``dynamic_landmark_bary
(Y, 17, 3)``, ``dynamic_landmark_yaw (Y,)`` radians). The ablation then applies DECA's landmark
loss to all 68 points: the 17 marched contour points plus the 51 static inner ones.

Selecting the marched points for a pose (yaw, table look-up, barycentric interpolation) is the
head model's business: :mod:`facetwin.headmodel.marching`. This module holds the loss only.
"""

from __future__ import annotations

import torch

from facetwin.losses.landmarks import CONTOUR, deca_landmark_weights, landmark_loss


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
