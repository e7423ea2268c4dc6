"""The 68-point iBUG landmark scheme: the mirror table and the eye corners (0-based indices).

The ONE place these tables live; the annotator, augmentation, losses and the head-model build
all import them from here.
"""

from __future__ import annotations

import numpy as np

LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45  # points 37 and 46 (1-based)

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
