"""Face detection (dlib HOG, offline).

The detector runs on a working copy of the image: downscaled so its long side is at most
``work_side``, padded by replicating the border (tight face crops such as UTKFace cut the
face box, which HOG then misses) and upsampled once when small. Boxes come back in the
coordinates of the input image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetwin.data.models import hog_detector


@dataclass
class Detection:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in image pixels (corner convention)
    score: float  # dlib HOG detection confidence (0 = default threshold)

    @property
    def size(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def detect_faces(
    image: np.ndarray,
    threshold: float = -0.3,
    work_side: int = 1024,
    small_side: int = 500,
    pad_fraction: float = 0.2,
    max_upsample: int = 2,
) -> list[Detection]:
    """Faces in an ``(H, W, 3)`` uint8 RGB image, largest first.

    ``threshold`` is added to dlib's own decision threshold (negative = more permissive;
    the reliability check after landmarking rejects the false positives this lets in).
    """
    h, w = image.shape[:2]
    scale = min(1.0, work_side / max(h, w))
    work = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    pad = int(round(pad_fraction * min(work.shape[:2])))
    if pad:
        work = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    upsample = 1 if min(work.shape[:2]) < small_side else 0
    work = np.ascontiguousarray(work)
    rects, scores, _ = hog_detector().run(work, upsample, threshold)
    # HOG's smallest window is 80 px: when nothing is found, look again at double resolution.
    while not len(rects) and upsample < max_upsample and max(work.shape[:2]) * 2 ** (upsample + 1) <= 2 * work_side:
        upsample += 1
        rects, scores, _ = hog_detector().run(work, upsample, threshold)
    faces = []
    for rect, score in zip(rects, scores):
        # dlib rectangles are inclusive pixel indices; +1 on the far side gives corner coords.
        box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float64)
        box = (box - pad) / scale
        faces.append(Detection(box=box, score=float(score)))
    faces.sort(key=lambda d: -d.size)
    return faces
