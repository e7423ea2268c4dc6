"""Training augmentation with labels kept consistent (numpy, deterministic given an rng).

One warp (scale / translation / rotation jitter, optional mirror; optionally a wide roll and a
synthetic out-of-plane tilt for large poses, off by default) moves the image, the 68 landmarks
and the skin mask together; colour jitter changes only the image; synthetic
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
    # Large poses (issue #14; 0 = off, the shipped behaviour):
    wide_roll: float = 0.0  # probability of a roll drawn from [-wide_roll_degrees, wide_roll_degrees] instead
    wide_roll_degrees: float = 45.0
    tilt: float = 0.0  # probability of a synthetic yaw or pitch: the crop seen as a plane turned about its centre
    tilt_degrees: float = 30.0  # uniform in [-t, t]; yaw or pitch with equal probability
    tilt_focal: float = 2.0  # focal length of the virtual camera, in crop sides (foreshortening strength)

    def geometry(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Random affine (2, 3) on a ``size`` crop: rotation and zoom about the centre, then shift."""
        s = 1.0 + rng.uniform(-self.scale, self.scale)
        if self.wide_roll > 0 and rng.uniform() < self.wide_roll:
            a = np.deg2rad(rng.uniform(-self.wide_roll_degrees, self.wide_roll_degrees))
        else:
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

    def tilt_homography(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """(3, 3) homography of the crop seen as a plane turned by a random yaw or pitch about its
        centre, through a pinhole of focal length ``tilt_focal`` crop sides, rescaled so the
        crop centre keeps its place and size (the face is foreshortened on one side, stretched on
        the other, as when the head turns)."""
        angle = np.deg2rad(rng.uniform(-self.tilt_degrees, self.tilt_degrees))
        return plane_tilt(size, angle, axis="yaw" if rng.uniform() < 0.5 else "pitch", focal=self.tilt_focal * size)

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
        H = np.vstack([A, [0.0, 0.0, 1.0]])
        if self.tilt > 0 and rng.uniform() < self.tilt:
            H = self.tilt_homography(size, rng) @ H
        if np.allclose(H[2], [0.0, 0.0, 1.0]):
            image = warp(image, A, (image.shape[1], image.shape[0]))
            skin = warp(skin, A, (skin.shape[1], skin.shape[0]), interpolation=cv2.INTER_NEAREST)
            landmarks = landmarks @ A[:, :2].T + A[:, 2]
        else:
            wh = (image.shape[1], image.shape[0])
            # OpenCV addresses pixel centres by integer indices: shift by half a pixel on both sides
            half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
            Hcv = np.linalg.inv(half) @ H @ half
            image = cv2.warpPerspective(image, Hcv, wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            skin = cv2.warpPerspective(skin, Hcv, wh, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            landmarks = apply_homography(H, landmarks)
        if mirrored:
            landmarks = landmarks[MIRROR_68]
        image = self.colour(image, rng)
        occ = np.zeros(image.shape[:2], np.uint8)
        if rng.uniform() < self.occluder:
            image, occ = self.occlude(image, landmarks, rng)
            skin = skin * (1 - occ)
        return {"image": image, "landmarks": landmarks, "skin": skin, "affine": A, "homography": H,
                "occluder": occ.astype(np.float32)}



# The large-pose fields above: what a training config's ``data.pose_augment`` may set.
POSE_OPTIONS = ("wide_roll", "wide_roll_degrees", "tilt", "tilt_degrees", "tilt_focal")


def apply_homography(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points (pixel corner convention) mapped by a (3, 3) homography."""
    p = np.asarray(points, np.float64) @ H[:, :2].T + H[:, 2]
    return p[:, :2] / p[:, 2:3]


def plane_tilt(size: int, angle: float, axis: str = "yaw", focal: float | None = None) -> np.ndarray:
    """(3, 3) homography: a ``size`` crop as a plane at distance ``focal`` (pixels) turned by
    ``angle`` radians about its vertical (``"yaw"``) or horizontal (``"pitch"``) centre line,
    seen through a pinhole of that focal length. The centre stays fixed, with unit scale there."""
    f = float(focal or 2.0 * size)
    c = size / 2.0
    ca, sa = np.cos(angle), np.sin(angle)
    if axis == "yaw":
        R = np.array([[ca, 0.0, sa], [0.0, 1.0, 0.0], [-sa, 0.0, ca]])
    elif axis == "pitch":
        R = np.array([[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]])
    else:
        raise ValueError(f"axis must be 'yaw' or 'pitch', not '{axis}'")
    K = np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])
    # plane point (x, y) ↦ 3-D (x - c, y - c, f) before the turn; after: R · that
    P = np.array([[1.0, 0.0, -c], [0.0, 1.0, -c], [0.0, 0.0, f]])
    H = K @ R @ P
    H = H / H[2, 2]
    # re-centre (the turned plane's centre is imaged off-centre), then unit scale at the centre:
    # the face keeps its place and size, only the foreshortening changes
    m = apply_homography(H, np.array([[c, c]]))[0]
    H = np.array([[1.0, 0.0, c - m[0]], [0.0, 1.0, c - m[1]], [0.0, 0.0, 1.0]]) @ H
    k = 1.0 / np.sqrt(abs(np.linalg.det(_jacobian(H, c, c))))
    S = np.array([[k, 0.0, c * (1 - k)], [0.0, k, c * (1 - k)], [0.0, 0.0, 1.0]])
    return S @ H


def _jacobian(H: np.ndarray, x: float, y: float) -> np.ndarray:
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    u = H[0, 0] * x + H[0, 1] * y + H[0, 2]
    v = H[1, 0] * x + H[1, 1] * y + H[1, 2]
    return np.array([[H[0, 0] / w - u * H[2, 0] / w**2, H[0, 1] / w - u * H[2, 1] / w**2],
                     [H[1, 0] / w - v * H[2, 0] / w**2, H[1, 1] / w - v * H[2, 1] / w**2]])


def _rotate_hue(x: np.ndarray, angle: float) -> np.ndarray:
    """Rotate RGB colours about the grey axis by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    k = np.ones(3, np.float32) / np.sqrt(3.0)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], np.float32)
    R = c * np.eye(3, dtype=np.float32) + s * K + (1 - c) * np.outer(k, k)
    return x @ R.T.astype(np.float32)
