"""The 68-point iBUG landmark scheme: the mirror table, the eye corners (0-based indices) and the
head-turn proxy of a labelling (:func:`nose_asymmetry`).

The ONE place these tables live; the annotator, augmentation, losses and the head-model build
all import them from here.
"""

from __future__ import annotations

import numpy as np

LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45  # points 37 and 46 (1-based)
NOSE_TIP, CONTOUR_ENDS = 30, (0, 16)  # point 31, jaw ends 1 and 17 (1-based)

# Index of each point's mirror partner under a horizontal flip (subject's left = image right).
MIRROR_68 = np.array(
    list(range(16, -1, -1))                              # jaw 0..16
    + list(range(26, 16, -1))                            # brows 17..26
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]            # nose bridge, nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]   # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]   # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65],                  # inner lips
    dtype=np.int64,
)


def nose_asymmetry(landmarks) -> np.ndarray:
    """Signed head-turn proxy from 68-point labels ``(N, 68, 2)`` → ``(N,)`` in [-1, 1].

    ``(|n − c₁| − |n − c₁₇|) / (|n − c₁| + |n − c₁₇|)`` with n the nose tip (point 31) and c₁, c₁₇
    the ends of the jaw contour: 0 for a frontal face, ±1 in profile, sign flips with a mirror.
    With the nose ~0.6 half face-widths in front of the contour it is ≈ 0.6·tan(yaw), so 0.1 is
    roughly 10° and 0.25 roughly 23°; it needs no 3D fit, which keeps it a fair ruler for
    comparing models.
    """
    if hasattr(landmarks, "detach"):
        landmarks = landmarks.detach().cpu().numpy()
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    left = np.linalg.norm(lm[:, NOSE_TIP] - lm[:, CONTOUR_ENDS[0]], axis=-1)
    right = np.linalg.norm(lm[:, NOSE_TIP] - lm[:, CONTOUR_ENDS[1]], axis=-1)
    return (left - right) / np.maximum(left + right, 1e-9)
