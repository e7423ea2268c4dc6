"""Square face crops and their 2x3 transforms.

A crop is described by the affine ``A`` (2, 3) that maps image pixels to crop pixels,
``x_crop = A[:, :2] @ x + A[:, 2]`` (corner convention on both sides); its inverse maps
crop pixels back to the original image.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_SIZE = 224
DEFAULT_SCALE = 1.6  # crop side / longest side of the 68 points' bounding box
DEFAULT_SHIFT_UP = 0.12  # crop centre above the landmark box centre, in landmark-box heights (forehead)


def crop_square(landmarks: np.ndarray, scale: float = DEFAULT_SCALE, shift_up: float = DEFAULT_SHIFT_UP) -> tuple[np.ndarray, float]:
    """Centre ``(2,)`` and side of a square around ``(68, 2)`` landmarks."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    centre = (lo + hi) / 2.0
    centre[1] -= shift_up * (hi[1] - lo[1])
    side = float(scale * max(hi - lo))
    return centre, side


def crop_transform(centre: np.ndarray, side: float, size: int) -> np.ndarray:
    """Affine (2, 3) from image pixels to a ``size`` x ``size`` crop of the square (centre, side)."""
    s = size / side
    return np.array([[s, 0.0, size / 2.0 - s * centre[0]], [0.0, s, size / 2.0 - s * centre[1]]])


def invert_affine(A: np.ndarray) -> np.ndarray:
    M = np.vstack([np.asarray(A, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(M)[:2]


def compose_affine(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The affine ``A ∘ B`` (apply ``B`` first)."""
    Ah = np.vstack([A, [0, 0, 1]])
    Bh = np.vstack([B, [0, 0, 1]])
    return (Ah @ Bh)[:2]


def apply_affine(A: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points ``(..., 2)`` mapped by ``A`` (2, 3)."""
    A = np.asarray(A, dtype=np.float64)
    return points @ A[:, :2].T + A[:, 2]


def warp(image: np.ndarray, A: np.ndarray, size: int | tuple[int, int], interpolation: int = cv2.INTER_LINEAR, border_value=0) -> np.ndarray:
    """Resample ``image`` by the corner-convention affine ``A`` into ``size`` (square or (W, H)).

    Strong downscaling first shrinks the image with area averaging (no aliasing).
    """
    out_w, out_h = (size, size) if np.isscalar(size) else size
    A = np.asarray(A, dtype=np.float64)
    zoom = np.sqrt(abs(np.linalg.det(A[:, :2])))
    if zoom < 0.5 and interpolation != cv2.INTER_NEAREST:
        f = 1.0 / int(np.floor(1.0 / zoom))  # integer factor keeps the arithmetic exact
        small = cv2.resize(image, (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f))), interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]
        A = compose_affine(A, np.array([[1.0 / fx, 0, 0], [0, 1.0 / fy, 0]]))
        image = small
    # OpenCV addresses pixel centres by integer indices: shift by half a pixel on both sides.
    B = A.copy()
    B[:, 2] = A[:, 2] + A[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(image, B, (out_w, out_h), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
