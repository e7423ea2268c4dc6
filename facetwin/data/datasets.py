"""Datasets (torch): prepared crops (:class:`PreparedDataset`, the one reader, defined in
:mod:`facetwin.data.prepared` with the batch-key vocabulary), raw image folders, annotated
folders, streamed videos. Keys: ``image`` (3, H, W) float32 in [0, 1], ``landmarks`` (68, 2)
float32 pixels (corner convention), plus those each class lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from facetwin.data.io import IMAGE_EXTENSIONS, is_image_path, load_image
from facetwin.data.prepared import PreparedDataConfig, PreparedDataset, load_manifest  # noqa: F401 (the one reader)
from facetwin.data.pts import read_pts
from facetwin.data.video import iter_frames
from facetwin.errors import FacetwinError


def _to_tensor_image(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().div_(255.0)


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
