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


def test_default_augmenter_is_unchanged_by_the_pose_options():
    """Wide roll and tilt are off by default and draw nothing from the rng when off."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    lm = rng.uniform(10, 50, (68, 2))
    skin = np.full((64, 64), 255, np.uint8)
    a = Augmenter(flip=0.5)(img, lm, skin, np.random.default_rng(11))
    b = Augmenter(flip=0.5, wide_roll=0.0, tilt=0.0)(img, lm, skin, np.random.default_rng(11))
    assert np.array_equal(a["image"], b["image"]) and np.allclose(a["landmarks"], b["landmarks"])
    assert np.allclose(a["homography"][2], [0, 0, 1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_tilt_moves_pixels_and_landmarks_together(seed):
    img, lm = _dots()
    aug = Augmenter(scale=0.05, translate=0.03, rotate=5, tilt=1.0, tilt_degrees=35, **NO_COLOUR)
    out = aug(img, lm, np.zeros(img.shape[:2], np.uint8), np.random.default_rng(seed))
    assert not np.allclose(out["homography"][2], [0, 0, 1])  # a real perspective warp
    checked = 0
    for p in out["landmarks"]:
        if 6 < p.min() and p.max() < 154:
            assert np.linalg.norm(_find(out["image"], p) - p) < 0.5
            checked += 1
    assert checked > 50


def test_plane_tilt_foreshortens_one_side_and_keeps_the_centre():
    from facetwin.data.augment import apply_homography, plane_tilt

    H = plane_tilt(100, np.deg2rad(30), "yaw", focal=200)
    c = apply_homography(H, np.array([[50.0, 50.0]]))[0]
    assert np.allclose(c, [50, 50], atol=1e-9)
    left, right = apply_homography(H, np.array([[20.0, 50.0], [80.0, 50.0]]))
    # the two sides of the turned plane are imaged at different widths; vertical lines stay vertical at the centre
    assert abs((50 - left[0]) - (right[0] - 50)) > 2
    Hp = plane_tilt(100, np.deg2rad(30), "pitch", focal=200)
    top, bottom = apply_homography(Hp, np.array([[50.0, 20.0], [50.0, 80.0]]))
    assert abs((50 - top[1]) - (bottom[1] - 50)) > 2 and np.allclose([top[0], bottom[0]], 50)
    # zero angle is the identity
    assert np.allclose(plane_tilt(100, 0.0, "yaw"), np.eye(3))


def test_wide_roll_reaches_large_angles():
    aug = Augmenter(scale=0, translate=0, rotate=0, flip=0, wide_roll=1.0, wide_roll_degrees=45, **NO_COLOUR)
    angles = [np.degrees(np.arctan2(aug.geometry(100, np.random.default_rng(s))[1, 0], aug.geometry(100, np.random.default_rng(s))[0, 0]))
              for s in range(40)]
    assert max(np.abs(angles)) > 30 and max(np.abs(angles)) <= 45
