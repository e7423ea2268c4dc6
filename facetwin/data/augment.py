"""Training augmentation with labels kept consistent (numpy, deterministic given an rng).

One affine warp (scale / translation / rotation jitter, optional mirror) moves the image,
the 68 landmarks and the skin mask together; colour jitter changes only the image; synthetic
occluders (ellipses, polygons, textured patches cut from elsewhere in the image) are pasted on
the face and returned as an ``occluder`` mask, and removed from ``skin`` so that a photometric
loss on ``skin`` never sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facetwin.data.alignment import warp
from facetwin.data.annotator import MIRROR_68


@dataclass
class Augmenter:
    scale: float = 0.10  # relative zoom jitter, uniform in [1 - s, 1 + s]
    translate: float = 0.06  # shift jitter, fraction of the crop side
    rotate: float = 12.0  # degrees, uniform in [-r, r]
    flip: float = 0.0  # probability of mirroring (landmark indices are permuted)
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 6.0  # degrees of hue rotation
    gamma: float = 0.2
    occluder: float = 0.3  # probability of pasting one occluder
    occluder_size: tuple[float, float] = (0.12, 0.35)  # fraction of the crop side

    def geometry(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Random affine (2, 3) on a ``size`` crop: rotation and zoom about the centre, then shift."""
        s = 1.0 + rng.uniform(-self.scale, self.scale)
        a = np.deg2rad(rng.uniform(-self.rotate, self.rotate))
        t = rng.uniform(-self.translate, self.translate, 2) * size
        c = size / 2.0
        R = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        A = np.zeros((2, 3))
        A[:, :2] = R
        A[:, 2] = c + t - R @ np.array([c, c])
        if rng.uniform() < self.flip:
            F = np.array([[-1.0, 0.0, size], [0.0, 1.0, 0.0]])
            A = np.vstack([F, [0, 0, 1]])[:2] @ np.vstack([A, [0, 0, 1]])
        return A

    def colour(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = image.astype(np.float32) / 255.0
        x = x * (1.0 + rng.uniform(-self.brightness, self.brightness))
        mean = x.mean()
        x = (x - mean) * (1.0 + rng.uniform(-self.contrast, self.contrast)) + mean
        grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
        x = (x - grey[..., None]) * (1.0 + rng.uniform(-self.saturation, self.saturation)) + grey[..., None]
        if self.hue:
            x = _rotate_hue(x, np.deg2rad(rng.uniform(-self.hue, self.hue)))
        x = np.clip(x, 0.0, 1.0) ** np.exp(rng.uniform(-self.gamma, self.gamma))
        return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def occlude(self, image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Paste one random occluder near the face; returns (image, occluder mask (H, W) uint8 0/1)."""
        h, w = image.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        side = rng.uniform(*self.occluder_size) * min(h, w)
        lo, hi = landmarks.min(0), landmarks.max(0)
        centre = rng.uniform(lo, hi)
        kind = rng.integers(3)
        if kind == 0:
            axes = (int(side / 2), int(side / 2 * rng.uniform(0.4, 1.0)))
            cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            n = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = side / 2 * rng.uniform(0.5, 1.0, n)
            poly = centre + np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1)
            cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        if kind == 2:  # textured patch: pixels from a random shift of the image itself
            dx, dy = rng.integers(-w // 2, w // 2), rng.integers(-h // 2, h // 2)
            texture = np.roll(image, (int(dy), int(dx)), axis=(0, 1))
        else:
            colour = rng.integers(0, 256, 3)
            noise = rng.normal(0, rng.uniform(0, 25), (h, w, 1))
            texture = np.clip(colour[None, None, :] + noise, 0, 255).astype(np.uint8)
        out = image.copy()
        out[mask > 0] = texture[mask > 0]
        return out, mask

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, skin: np.ndarray, rng: np.random.Generator) -> dict:
        """``image`` (H, W, 3) uint8, ``landmarks`` (68, 2), ``skin`` (H, W) uint8 → dict with the
        augmented ``image``, ``landmarks``, ``skin``, the applied ``affine`` (2, 3) and ``occluder``
        (H, W) float32 in {0, 1}."""
        size = image.shape[0]
        A = self.geometry(size, rng)
        mirrored = A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0] < 0
        image = warp(image, A, (image.shape[1], image.shape[0]))
        skin = warp(skin, A, (skin.shape[1], skin.shape[0]), interpolation=cv2.INTER_NEAREST)
        landmarks = landmarks @ A[:, :2].T + A[:, 2]
        if mirrored:
            landmarks = landmarks[MIRROR_68]
        image = self.colour(image, rng)
        occ = np.zeros(image.shape[:2], np.uint8)
        if rng.uniform() < self.occluder:
            image, occ = self.occlude(image, landmarks, rng)
            skin = skin * (1 - occ)
        return {"image": image, "landmarks": landmarks, "skin": skin, "affine": A, "occluder": occ.astype(np.float32)}


def _rotate_hue(x: np.ndarray, angle: float) -> np.ndarray:
    """Rotate RGB colours about the grey axis by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    k = np.ones(3, np.float32) / np.sqrt(3.0)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], np.float32)
    R = c * np.eye(3, dtype=np.float32) + s * K + (1 - c) * np.outer(k, k)
    return x @ R.T.astype(np.float32)
