"""Pixel masks of head-model regions in a rasterisation (e.g. the face without scalp, ears, neck).

The identity loss compares the render pasted over the photo with the photo. Pasting the whole
head paints a bald scalp over the hair and a neck over the collar, which dominate a face
descriptor; pasting only the face region (:data:`FACE_REGIONS`) leaves hair and background as
photographed, so the descriptor sees the reconstructed face in the photo's own surroundings.
"""

from __future__ import annotations

import numpy as np
import torch

from facetwin.rendering.rasterizer import Fragments

FACE_REGIONS = ("face", "nose", "lips", "eyes", "eye_sockets")  # inside the hairline, in front of the ears
NOT_FACE_REGIONS = ("ears", "neck")


def region_triangles(faces: np.ndarray, masks: dict[str, np.ndarray], include=FACE_REGIONS, exclude=NOT_FACE_REGIONS) -> np.ndarray:
    """(F,) bool: triangles whose three vertices are in one of the ``include`` vertex masks and in
    none of the ``exclude`` masks (missing mask names are ignored); ``masks``: name → (V,) bool."""
    faces = np.asarray(faces)
    V = int(faces.max()) + 1
    inside = np.zeros(V, bool)
    for name in include:
        if name in masks:
            inside |= np.asarray(masks[name], bool)
    for name in exclude:
        if name in masks:
            inside &= ~np.asarray(masks[name], bool)
    return inside[faces].all(1)


def region_mask(fragments: Fragments, triangles: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) float mask of the pixels covered by a triangle flagged in ``triangles`` (F,) bool."""
    ids = fragments.triangle_ids
    flags = triangles.to(ids.device)
    hit = (ids >= 0) & flags[ids.clamp_min(0)]
    return hit[:, None].float()
