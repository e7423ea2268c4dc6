"""Landmark re-projection losses on the 68-point iBUG/300-W layout.

All functions take crop-pixel coordinates and divide distances by the crop size, so the
weights do not depend on the training resolution. The distance between two points is the
L1 norm ``|dx| + |dy|`` (the ``d`` of the paper's Eq. 1). Reductions are confidence-weighted
means: ``sum(w * d) / sum(w)`` (DECA's convention), so an image whose labels all have weight 0
contributes nothing.
"""

from __future__ import annotations

import torch

# 0-based index ranges of the 68-point layout.
CONTOUR = tuple(range(0, 17))      # 1–17 jaw contour (silhouette landmarks)
INNER = tuple(range(17, 68))       # 18–68 brows, nose, eyes, mouth (static on the mesh)

# Special landmark pairs (1-based in the 300-W numbering, as in the issue): eyelids and lips.
EYELID_PAIRS_1BASED = ((38, 42), (39, 41), (44, 48), (45, 47))
INNER_LIP_PAIRS_1BASED = ((62, 68), (63, 67), (64, 66))
OUTER_LIP_PAIRS_1BASED = ((51, 59), (52, 58), (53, 57))
LANDMARK_PAIRS = tuple(
    (a - 1, b - 1) for a, b in EYELID_PAIRS_1BASED + INNER_LIP_PAIRS_1BASED + OUTER_LIP_PAIRS_1BASED
)


def deca_landmark_weights(dtype=torch.float32, device=None) -> torch.Tensor:
    """DECA's per-point emphasis for the 68-point loss, (68,): 2 on the jaw near the mouth
    corners, 1.5 on the nose and mouth, 3 on nose tip/wings and mouth corners."""
    w = torch.ones(68, dtype=dtype, device=device)
    w[5:7] = 2
    w[10:12] = 2
    w[27:36] = 1.5
    w[[30, 31, 35]] = 3
    w[48:68] = 1.5
    w[[48, 54]] = 3
    return w


def crop_size_of(crop_size, like: torch.Tensor) -> torch.Tensor:
    """The crop size as a (B, 1) tensor broadcastable against per-point distances (B, N)."""
    s = torch.as_tensor(crop_size, dtype=like.dtype, device=like.device)
    if s.ndim == 0:
        s = s.expand(like.shape[0])
    return s.reshape(-1, 1)


def l1_point_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 2), (..., 2) → (...) the L1 distance |dx| + |dy|."""
    return (a - b).abs().sum(-1)


def weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``sum(w * v) / sum(w)`` over all elements (plain mean without weights); 0 if sum(w) = 0."""
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype).expand_as(values)
    total = weight.sum()
    return (values * weight).sum() / total.clamp_min(torch.finfo(values.dtype).tiny) * (total > 0)


def landmark_loss(
    landmarks2d: torch.Tensor,
    gt_landmarks: torch.Tensor,
    crop_size,
    landmark_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Re-projection loss on any subset of points: weighted mean of L1 distances / crop size.

    Args:
        landmarks2d: (B, N, 2) projected model points, crop pixels.
        gt_landmarks: (B, N, 2) targets, crop pixels.
        crop_size: float or (B,) side length of the crop in pixels.
        landmark_weight: optional (B, N) or (N,) confidences / emphasis.
    Returns:
        scalar.
    """
    d = l1_point_distance(landmarks2d, gt_landmarks) / crop_size_of(crop_size, landmarks2d)
    return weighted_mean(d, landmark_weight)


def inner_landmark_loss(
    landmarks2d: torch.Tensor,
    gt_landmarks: torch.Tensor,
    crop_size,
    landmark_weight: torch.Tensor | None = None,
    deca_weighting: bool = False,
) -> torch.Tensor:
    """L_inL: the static inner landmarks 18–68.

    Args:
        landmarks2d, gt_landmarks: (B, 68, 2) crop pixels.
        landmark_weight: optional (B, 68) per-landmark confidence (automatic labels).
        deca_weighting: multiply DECA's per-point emphasis into the weights.
    """
    idx = list(INNER)
    w = _combine_weights(landmark_weight, deca_weighting, landmarks2d)
    return landmark_loss(landmarks2d[:, idx], gt_landmarks[:, idx], crop_size, None if w is None else w[..., idx])


def full_landmark_loss(
    landmarks68: torch.Tensor,
    gt_landmarks: torch.Tensor,
    crop_size,
    landmark_weight: torch.Tensor | None = None,
    deca_weighting: bool = True,
) -> torch.Tensor:
    """DECA-style loss on all 68 points (the "w/o L_sil" ablation uses it with marched contours)."""
    w = _combine_weights(landmark_weight, deca_weighting, landmarks68)
    return landmark_loss(landmarks68, gt_landmarks, crop_size, w)


def _safe_norm(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    # sqrt has an infinite slope at 0 (closed lips: coincident points); clamp keeps gradients finite.
    return (x * x).sum(-1).clamp_min(eps).sqrt()


def landmark_pair_loss(
    landmarks2d: torch.Tensor,
    gt_landmarks: torch.Tensor,
    crop_size,
    pairs=LANDMARK_PAIRS,
    landmark_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_spL: match eye and mouth openings, translation invariant.

    For each pair (a, b) the Euclidean distance |p_a - p_b| of the prediction is compared with
    that of the labels: mean over pairs of ``| |p_a - p_b| - |g_a - g_b| | / crop_size``
    (DECA's eye-closure/lip-distance loss). A pair's confidence is the smaller of its two
    landmark weights.

    Args:
        landmarks2d, gt_landmarks: (B, 68, 2) crop pixels.
        pairs: sequence of (a, b) 0-based index pairs.
        landmark_weight: optional (B, 68).
    """
    a = torch.tensor([p[0] for p in pairs], device=landmarks2d.device)
    b = torch.tensor([p[1] for p in pairs], device=landmarks2d.device)
    pred = _safe_norm(landmarks2d[:, a] - landmarks2d[:, b])
    gt = _safe_norm(gt_landmarks[:, a] - gt_landmarks[:, b])
    d = (pred - gt).abs() / crop_size_of(crop_size, landmarks2d)
    w = None
    if landmark_weight is not None:
        lw = landmark_weight.expand(landmarks2d.shape[0], -1) if landmark_weight.ndim == 1 else landmark_weight
        w = torch.minimum(lw[:, a], lw[:, b])
    return weighted_mean(d, w)


def _combine_weights(landmark_weight, deca_weighting: bool, like: torch.Tensor) -> torch.Tensor | None:
    if not deca_weighting:
        return landmark_weight
    deca = deca_landmark_weights(like.dtype, like.device)[None]
    return deca if landmark_weight is None else landmark_weight * deca
