"""Augmentation keeps image, landmarks and masks consistent."""

import cv2
import numpy as np
import pytest

from facetwin.data.annotator import MIRROR_68
from facetwin.data.augment import Augmenter


def _dots(size=160, seed=0):
    """68 well-separated landmark positions, each drawn as a 3x3 bright square."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(9), np.arange(8)), -1).reshape(-1, 2)[:68]
    lm = 30 + grid * 13.0 + rng.uniform(-2, 2, (68, 2))
    img = np.zeros((size, size, 3), np.uint8)
    for x, y in lm:
        i, j = int(y), int(x)  # the pixel containing the point
        img[i - 1 : i + 2, j - 1 : j + 2] = 255
    centres = np.floor(lm) + 0.5  # centre of that 3x3 square
    return img, centres


def _find(img, p, r=5):
    x0, y0 = int(p[0]) - r, int(p[1]) - r
    patch = img[max(y0, 0) : y0 + 2 * r + 1, max(x0, 0) : x0 + 2 * r + 1, 0].astype(float)
    ys, xs = np.nonzero(patch > 0)
    w = patch[ys, xs]
    return np.array([(xs * w).sum() / w.sum() + max(x0, 0) + 0.5, (ys * w).sum() / w.sum() + max(y0, 0) + 0.5])


NO_COLOUR = dict(brightness=0, contrast=0, saturation=0, hue=0, gamma=0, occluder=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometry_moves_pixels_and_landmarks_together(seed):
    img, lm = _dots()
    aug = Augmenter(scale=0.15, translate=0.08, rotate=20, **NO_COLOUR)
    out = aug(img, lm, np.zeros(img.shape[:2], np.uint8), np.random.default_rng(seed))
    for p in out["landmarks"]:
        if 5 < p.min() and p.max() < 155:
            assert np.linalg.norm(_find(out["image"], p) - p) < 0.35


def test_mirror_permutes_labels():
    img, lm = _dots()
    out = Augmenter(scale=0, translate=0, rotate=0, flip=1.0, **NO_COLOUR)(img, lm, np.zeros((160, 160), np.uint8), np.random.default_rng(0))
    assert np.allclose(out["landmarks"][:, 0], 160 - lm[MIRROR_68, 0]) and np.allclose(out["landmarks"][:, 1], lm[MIRROR_68, 1])
    # Point 37 (outer corner of the image-left eye) is where the mirrored point 46 went.
    assert out["landmarks"][36, 0] == pytest.approx(160 - lm[45, 0])
    assert np.array_equal(out["image"], img[:, ::-1])


def test_colour_only_and_determinism():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    lm = rng.uniform(10, 50, (68, 2))
    skin = (rng.uniform(size=(64, 64)) > 0.5).astype(np.uint8) * 255
    aug = Augmenter(scale=0, translate=0, rotate=0, occluder=0)
    a = aug(img, lm, skin, np.random.default_rng(7))
    b = aug(img, lm, skin, np.random.default_rng(7))
    c = aug(img, lm, skin, np.random.default_rng(8))
    assert np.array_equal(a["image"], b["image"]) and not np.array_equal(a["image"], c["image"])
    assert np.allclose(a["landmarks"], lm) and np.array_equal(a["skin"], skin)
    assert not np.array_equal(a["image"], img)


def test_occluder_mask_matches_changed_pixels():
    rng = np.random.default_rng(0)
    img = np.full((96, 96, 3), 120, np.uint8)
    lm = rng.uniform(25, 70, (68, 2))
    skin = np.full((96, 96), 255, np.uint8)
    aug = Augmenter(scale=0, translate=0, rotate=0, brightness=0, contrast=0, saturation=0, hue=0, gamma=0, occluder=1.0)
    for seed in range(6):
        out = aug(img, lm, skin, np.random.default_rng(seed))
        occ = out["occluder"] > 0
        assert occ.sum() > 20
        changed = np.any(out["image"] != img, axis=2)
        assert not changed[~occ].any()  # nothing outside the occluder moved
        assert (out["skin"][occ] == 0).all() and (out["skin"][~occ] == 255).all()
