"""Datasets (torch): prepared crops, raw image folders, annotated folders, streamed videos.

Sample dictionaries use these keys (tensors unless said otherwise):

* ``image`` (3, H, W) float32 in [0, 1]
* ``landmarks`` (68, 2) float32, crop pixels (corner convention)
* ``skin`` (1, H, W) float32 in {0, 1}
* ``identity`` int64 (index into ``dataset.identities``), ``key`` str
* ``transform`` (2, 3) float32: original image pixels → the returned crop
* ``gt_landmarks`` (68, 2) float32 (NaN where absent), ``has_gt`` bool
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from facetwin.data.alignment import compose_affine
from facetwin.data.io import IMAGE_EXTENSIONS, is_image_path, load_image
from facetwin.data.prepare import read_jsonl
from facetwin.data.pts import read_pts
from facetwin.data.video import iter_frames
from facetwin.errors import FacetwinError


def _to_tensor_image(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().div_(255.0)


def load_manifest(folder) -> list[dict]:
    """All records of every shard of a prepared folder; the last line per key wins."""
    folder = Path(folder)
    files = sorted(folder.glob("manifest.shard-*.jsonl"))
    if not files:
        raise FacetwinError(f"{folder} holds no prepared data (run 'facetwin prepare SRC --out {folder}')")
    records: dict[str, dict] = {}
    for f in files:
        for r in read_jsonl(f):
            records[r["key"]] = r
    return [records[k] for k in sorted(records)]


class PreparedDataset(Dataset):
    """Face crops written by ``facetwin prepare``.

    ``size``: resize crops on load (e.g. 128 for the coarse model; landmarks and transform follow).
    ``augment``: optional callable ``(image uint8 (H,W,3), landmarks (68,2), skin (H,W) uint8, rng)
    -> dict`` (see :class:`facetwin.data.augment.Augmenter`); its extra keys (e.g. ``occluder``) are kept.
    ``min_reliability``: drop records below this reliability. ``sources``: keep keys starting with one of
    these prefixes (e.g. ``["train/utkface/"]``).
    """

    def __init__(self, folder, size: int | None = None, augment: Callable | None = None,
                 min_reliability: float | None = None, sources: list[str] | None = None):
        self.folder = Path(folder)
        records = load_manifest(self.folder)
        if min_reliability is not None:
            records = [r for r in records if r.get("reliability", 1.0) >= min_reliability]
        if sources:
            records = [r for r in records if any(r["key"].startswith(s) for s in sources)]
        if not records:
            raise FacetwinError(f"no prepared items left in {self.folder} after filtering")
        self.records = records
        self.size = size
        self.augment = augment
        self.identities = sorted({r["identity"] for r in records})
        index = {name: i for i, name in enumerate(self.identities)}
        self.identity_of = np.array([index[r["identity"]] for r in records], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        image = cv2.imread(str(self.folder / r["image"]), cv2.IMREAD_COLOR)
        skin = cv2.imread(str(self.folder / r["skin"]), cv2.IMREAD_GRAYSCALE)
        if image is None or skin is None:
            raise FacetwinError(f"prepared item missing or corrupt: {r['image']} (rerun facetwin prepare)")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        landmarks = np.asarray(r["landmarks"], dtype=np.float64)
        transform = np.asarray(r["transform"], dtype=np.float64)
        gt = np.asarray(r["gt_landmarks"], dtype=np.float64) if "gt_landmarks" in r else np.full((68, 2), np.nan)
        if self.size and self.size != image.shape[0]:
            f = self.size / image.shape[0]
            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            skin = cv2.resize(skin, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
            landmarks, gt = landmarks * f, gt * f
            transform = transform * f
        sample = {}
        if self.augment is not None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            out = self.augment(image, landmarks, skin, rng)
            image, landmarks, skin = out["image"], out["landmarks"], out["skin"]
            A = out.get("affine")
            if A is not None:
                transform = compose_affine(A, transform)
                gt = gt @ A[:, :2].T + A[:, 2]
            for k, v in out.items():
                if k not in ("image", "landmarks", "skin", "affine"):
                    sample[k] = torch.from_numpy(np.ascontiguousarray(v)).float()[None] if isinstance(v, np.ndarray) and v.ndim == 2 else v
        sample.update(
            image=_to_tensor_image(image),
            landmarks=torch.from_numpy(landmarks).float(),
            skin=torch.from_numpy((skin > 127).astype(np.float32))[None],
            identity=torch.tensor(int(self.identity_of[i])),
            key=r["key"],
            transform=torch.from_numpy(transform).float(),
            gt_landmarks=torch.from_numpy(gt).float(),
            has_gt=torch.tensor("gt_landmarks" in r),
            reliability=torch.tensor(float(r.get("reliability", 1.0))),
        )
        return sample


def annotated_pairs(folder) -> list[tuple[Path, Path]]:
    """(image, .pts) pairs of a folder, sorted; images without a .pts are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FacetwinError(f"no such folder: {folder}")
    pairs = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.with_suffix(".pts").is_file():
            pairs.append((p, p.with_suffix(".pts")))
    if not pairs:
        raise FacetwinError(f"no image + .pts pairs in {folder}")
    return pairs


class AnnotatedFolder(Dataset):
    """Images with iBUG ``.pts`` files: ``image`` (3, H, W), ``landmarks`` (68, 2) 0-based, ``path``.

    Images keep their own size (use ``batch_size=1`` or crop them first)."""

    def __init__(self, folder, max_side: int | None = 2048):
        self.pairs = annotated_pairs(folder)
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        image_path, pts_path = self.pairs[i]
        image, scale = load_image(image_path, self.max_side)
        return {"image": _to_tensor_image(image), "landmarks": torch.from_numpy(read_pts(pts_path) * scale).float(),
                "path": str(image_path), "scale": scale}


class ImageFolder(Dataset):
    """Every image under a folder (recursively), as ``image`` (3, H, W) + ``path`` + ``scale``.

    Unreadable files raise :class:`FacetwinError` on access; ``facetwin prepare`` is the robust path."""

    def __init__(self, folder, max_side: int | None = 2048):
        folder = Path(folder)
        if not folder.exists():
            raise FacetwinError(f"no such file or folder: {folder}")
        self.paths = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if is_image_path(p))
        if not self.paths:
            raise FacetwinError(f"no images in {folder}")
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        image, scale = load_image(self.paths[i], self.max_side)
        return {"image": _to_tensor_image(image), "path": str(self.paths[i]), "scale": scale}


class VideoFrames(IterableDataset):
    """Sampled frames of a video, decoded as a stream (one frame in memory at a time).

    Yields ``image`` (3, H, W), ``frame`` (index in the video), ``time`` (s), ``scale``."""

    def __init__(self, path, every_n: int | None = None, fps: float | None = None, max_frames: int | None = None,
                 max_side: int | None = 2048):
        self.path, self.every_n, self.fps, self.max_frames, self.max_side = Path(path), every_n, fps, max_frames, max_side

    def __iter__(self) -> Iterator[dict]:
        for index, t, frame, scale in iter_frames(self.path, self.every_n, self.fps, self.max_frames, self.max_side):
            yield {"image": _to_tensor_image(frame), "frame": index, "time": t, "scale": scale}
