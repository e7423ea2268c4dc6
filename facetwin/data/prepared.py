"""The ONE reader of `facetwin prepare` output (a prepared folder), for training and everything else.

Sample dictionaries (the one batch-key vocabulary; tensors unless said otherwise):

* ``image`` (3, S, S) float32 in [0, 1]
* ``landmarks`` (68, 2) float32 crop pixels (corner convention): the manual annotation where the
  source has one (e.g. HELEN-train's .pts), else the automatic annotator's — what training fits
* ``has_gt`` bool (``landmarks`` are manual), ``gt_landmarks`` (68, 2) (NaN where absent)
* ``skin`` (1, S, S) float32 in {0, 1}
* ``occluder`` (1, S, S) float32, 1 where augmentation pasted an occluder (with augmentation only)
* ``identity`` int64 (index into ``dataset.identities``, in order of first appearance), ``key`` str
* ``transform`` (2, 3) float32: original image pixels → this crop (before augmentation's warp)
* ``reliability`` float32: the annotator's reliability of the labels

Options: ``size`` (resize every crop once, e.g. 128 for the coarse model), ``augment`` (an
:class:`facetwin.data.augment.Augmenter` or any callable of that signature, or True for the
training default: mirror with probability 0.5), ``preload`` (keep every crop in memory as uint8:
11k crops of 128² ≈ 0.5 GB, so loading is never the bottleneck), ``fill_border`` (probability of
filling a crop's black padding with another crop's background), ``oversample`` (key prefix →
repeats per epoch, used by the identity batches), ``oversample_turns`` (repeats of crops whose
labels show a large head turn, |nose asymmetry| > 0.25, roughly > 23° of yaw),
``min_reliability`` / ``sources`` filters. The large-pose augmentation options of the training
config (``data.pose_augment``: wide roll, synthetic out-of-plane tilt) are
:class:`~facetwin.data.augment.Augmenter` fields; with a tilt, ``landmarks`` and ``gt_landmarks``
follow the full homography while ``transform`` keeps only its affine part.

Randomness (border fill, augmentation) is drawn from numpy's global RNG, which the training
engine seeds per sample (so a run is reproducible and resumes exactly).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from facetwin.errors import FacetwinError


@dataclass
class PreparedDataConfig:
    """The ``data:`` section of a training config (a prepared folder and how to read it)."""

    root: str = "prepared"        # `facetwin prepare` output (relative to the working directory, or absolute)
    crop_size: int = 128          # crops are resized to this once, on load
    preload: bool = True          # keep all crops in memory (uint8)
    identity_batches: bool = True # batches hold several images per identity (shape consistency)
    images_per_identity: int = 2
    augment: bool = True
    fill_border: float = 0.8      # probability of filling a crop's black padding with another crop's background
    oversample: dict[str, float] = field(default_factory=dict)  # key prefix -> repeats per epoch
    oversample_turns: float = 1.0  # repeats per epoch of crops whose labels show a large head turn (1 = off, as shipped)
    pose_augment: dict[str, float] = field(default_factory=dict)  # large-pose Augmenter options (wide_roll, tilt, ...; {} = off)

    def __post_init__(self):
        if self.crop_size < 16:
            raise FacetwinError(f"data.crop_size must be at least 16, got {self.crop_size}")
        if self.images_per_identity < 1:
            raise FacetwinError(f"data.images_per_identity must be >= 1, got {self.images_per_identity}")
        if not 0.0 <= self.fill_border <= 1.0:
            raise FacetwinError(f"data.fill_border is a probability in [0, 1], got {self.fill_border}")
        for k, v in self.oversample.items():
            if not v >= 1:
                raise FacetwinError(f"data.oversample.{k} must be a repeat count >= 1, got {v}")
        if not self.oversample_turns >= 1:
            raise FacetwinError(f"data.oversample_turns must be a repeat count >= 1, got {self.oversample_turns}")
        from facetwin.data.augment import POSE_OPTIONS

        for k, v in self.pose_augment.items():
            if k not in POSE_OPTIONS:
                raise FacetwinError(f"data.pose_augment.{k} is not a large-pose option ({', '.join(POSE_OPTIONS)})")
            if not v >= 0:
                raise FacetwinError(f"data.pose_augment.{k} must be >= 0, got {v}")


def clip_name(key: str) -> str:
    """The clip (or photo) a prepared item's key comes from: ``videos/smirk_skarsgard.mp4#f000012``
    → ``smirk_skarsgard``."""
    return key.split("#", 1)[0].rsplit("/", 1)[-1].rsplit(".", 1)[0]


def is_video_frame(key: str) -> bool:
    """Whether a prepared item's key is a video frame (``clip.mp4#f000012``; a photo's extra faces
    are ``photo.jpg#face1``): its source has a video extension."""
    from facetwin.data.io import is_video_path

    return is_video_path(key.split("#", 1)[0])


def load_manifest(folder) -> list[dict]:
    """All records of every manifest shard of a prepared folder, sorted by key; the last line per
    key wins (a resumed prepare may rewrite one); a torn last line of a running prepare is skipped."""
    from facetwin.data.prepare import read_jsonl

    folder = Path(folder)
    files = sorted(folder.glob("manifest*.jsonl"))
    if not files:
        raise FacetwinError(f"{folder} holds no prepared data (run 'facetwin prepare SRC --out {folder}')")
    records: dict[str, dict] = {}
    for f in files:
        for r in read_jsonl(f):
            if isinstance(r, dict) and "key" in r:
                records[r["key"]] = r
    return [records[k] for k in sorted(records)]


class PreparedDataset(Dataset):
    """Face crops written by ``facetwin prepare`` (keys and options: see the module docstring)."""

    def __init__(self, folder, size: int | None = None, augment: Callable | bool | None = None, preload: bool = False,
                 fill_border: float = 0.0, oversample: dict[str, float] | None = None, oversample_turns: float = 1.0,
                 min_reliability: float | None = None, sources: list[str] | None = None, limit: int = 0,
                 quiet: bool = True):
        self.folder = Path(folder)
        records = load_manifest(self.folder)
        if min_reliability is not None:
            records = [r for r in records if r.get("reliability", 1.0) >= min_reliability]
        if sources:
            records = [r for r in records if any(r["key"].startswith(s) for s in sources)]
        if limit:
            records = records[:limit]
        if not records:
            raise FacetwinError(f"no prepared items left in {self.folder} after filtering")
        self.records = records
        self.keys = [r["key"] for r in records]
        self.size = size
        if augment is True:
            from facetwin.data.augment import Augmenter

            augment = Augmenter(flip=0.5)
        self.augment = augment or None
        index: dict[str, int] = {}
        self.identity_of = np.array([index.setdefault(r.get("identity") or r["key"], len(index)) for r in records], np.int64)
        self.identities = list(index)
        # How often each crop appears per epoch (e.g. {"train/helen-train": 4}: the only manually
        # annotated in-the-wild photos are rare next to 9.8k UTKFace crops).
        self.repeats = np.ones(len(records), np.int64)
        for prefix, factor in (oversample or {}).items():
            hit = np.array([k.startswith(prefix) for k in self.keys], bool)
            self.repeats[hit] = max(1, int(round(factor)))
        if oversample_turns != 1.0:  # strong head turns are rare and the worst-predicted poses
            from facetwin.geometry.ibug68 import nose_asymmetry

            labels = np.stack([np.asarray(r.get("gt_landmarks") or r["landmarks"], np.float64) for r in records])
            self.repeats[np.abs(nose_asymmetry(labels)) > 0.25] *= max(1, int(round(oversample_turns)))
        self._cache: list | None = None
        if preload or fill_border > 0:
            it = range(len(records))
            if not quiet:
                from tqdm import tqdm

                it = tqdm(it, desc=f"loading {self.folder.name}", file=sys.stderr, leave=False, mininterval=2.0)
            self._cache = [self._read(i) for i in it]
        # Crops of tight sources (UTKFace: 200² face crops) are half black border, the others show
        # real context; a network learns that layout. Fill the border with another crop's
        # background (probability ``fill_border``) so both look alike.
        self.fill_border = fill_border if self.augment is not None else 0.0
        self.donors = np.zeros(0, np.int64)
        if self.fill_border > 0:
            black = np.array([(c[0].max(-1) <= 3).mean() for c in self._cache])
            self.donors = np.where(black < 0.02)[0]
        if not preload:
            self._cache = None if self.fill_border == 0 else self._cache

    @property
    def identity(self) -> np.ndarray:
        """(N,) identity index per item (alias of ``identity_of``)."""
        return self.identity_of

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(image (S, S, 3) uint8 RGB, skin (S, S) uint8, landmarks (68, 2) float32, transform (2, 3),
        gt (68, 2) float32 NaN where absent) of item ``i`` at ``size``."""
        if self._cache is not None:
            return self._cache[i]
        r = self.records[i]
        img = cv2.imread(str(self.folder / r["image"]), cv2.IMREAD_COLOR)
        if img is None:
            raise FacetwinError(f"prepared crop missing or corrupt: {self.folder / r['image']} (rerun facetwin prepare)")
        src = img.shape[0]
        S = self.size or src
        skin = cv2.imread(str(self.folder / r["skin"]), cv2.IMREAD_GRAYSCALE) if r.get("skin") else None
        if skin is None:
            skin = np.zeros(img.shape[:2], np.uint8)
        if S != src:
            img = cv2.resize(img, (S, S), interpolation=cv2.INTER_AREA)
            skin = cv2.resize(skin, (S, S), interpolation=cv2.INTER_NEAREST)
        f = np.float32(S / src)
        lm = np.asarray(r.get("gt_landmarks") or r["landmarks"], np.float32) * f
        gt = np.asarray(r["gt_landmarks"], np.float32) * f if r.get("gt_landmarks") else np.full((68, 2), np.nan, np.float32)
        transform = np.asarray(r.get("transform", [[1, 0, 0], [0, 1, 0]]), np.float64) * (S / src)
        return np.ascontiguousarray(img[:, :, ::-1]), skin, lm, transform, gt

    def __getitem__(self, i: int) -> dict:
        from facetwin.data.alignment import compose_affine

        img, mask, lm, transform, gt = self._read(i)
        lm = lm.copy()
        out = {}
        if self.fill_border > 0 and len(self.donors) and np.random.rand() < self.fill_border:
            img = fill_black_border(img, self._read(int(self.donors[np.random.randint(len(self.donors))]))[0])
        if self.augment is not None:
            rng = np.random.default_rng(int(np.random.randint(0, 2 ** 31)))
            aug = self.augment(img, lm.astype(np.float64), mask, rng)
            img, lm, mask = aug["image"], aug["landmarks"], aug["skin"]
            A, H = aug.get("affine"), aug.get("homography")
            if H is not None and not np.allclose(H[2], [0.0, 0.0, 1.0]):  # a synthetic tilt: the labels follow it
                from facetwin.data.augment import apply_homography

                gt = apply_homography(H, gt).astype(np.float32)
            elif A is not None:
                gt = (gt @ A[:, :2].T + A[:, 2]).astype(np.float32)
            if A is not None:
                transform = compose_affine(A, transform)
            for k, v in aug.items():
                if k not in ("image", "landmarks", "skin", "affine", "homography"):
                    out[k] = torch.from_numpy(np.ascontiguousarray(v).astype(np.float32))[None] if isinstance(v, np.ndarray) and v.ndim == 2 else v
        r = self.records[i]
        out.update(
            image=torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0,
            landmarks=torch.from_numpy(np.asarray(lm, np.float32)),
            skin=torch.from_numpy((mask > 127).astype(np.float32))[None],
            identity=torch.tensor(self.identity_of[i]),
            key=r["key"],
            transform=torch.from_numpy(np.asarray(transform, np.float32)),
            gt_landmarks=torch.from_numpy(np.asarray(gt, np.float32)),
            has_gt=torch.tensor(bool(r.get("gt_landmarks"))),
            reliability=torch.tensor(float(r.get("reliability", 1.0))),
        )
        return out

    def identity_batches(self, rng: np.random.Generator, batch_size: int, per_identity: int = 2) -> list[list[int]]:
        """One epoch of identity batches (:func:`facetwin.data.samplers.identity_batches`), with
        this dataset's oversampling."""
        from facetwin.data.samplers import identity_batches

        return identity_batches(self.identity_of, rng, batch_size, per_identity, self.repeats)


def open_prepared(cfg: PreparedDataConfig, size: int | None = None, quiet: bool = False) -> PreparedDataset:
    """The training set a :class:`PreparedDataConfig` describes (``size`` overrides ``crop_size``)."""
    augment = cfg.augment
    if augment and cfg.pose_augment:
        from facetwin.data.augment import Augmenter

        augment = Augmenter(flip=0.5, **dict(cfg.pose_augment))
    return PreparedDataset(cfg.root, size or cfg.crop_size, augment=augment, preload=cfg.preload,
                           fill_border=cfg.fill_border, oversample=dict(cfg.oversample),
                           oversample_turns=cfg.oversample_turns, quiet=quiet)


def black_border_mask(img: np.ndarray) -> np.ndarray:
    """(H, W) bool: the zero padding a crop got where it left its source image (near-black
    pixels connected to the crop border)."""
    dark = (img.max(-1) <= 3).astype(np.uint8)
    if not dark.any():
        return dark.astype(bool)
    n, labels = cv2.connectedComponents(dark, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    return np.isin(labels, edge)


def fill_black_border(img: np.ndarray, donor: np.ndarray) -> np.ndarray:
    """Replace the black padding of ``img`` (H, W, 3) uint8 by ``donor``'s pixels (randomly
    mirrored), with a 2-pixel soft seam."""
    mask = black_border_mask(img)
    if not mask.any():
        return img
    if np.random.rand() < 0.5:
        donor = donor[:, ::-1]
    a = cv2.GaussianBlur(mask.astype(np.float32), (5, 5), 1.0)[..., None]
    a = np.maximum(a, mask[..., None])
    return (img * (1 - a) + donor * a + 0.5).astype(np.uint8)
