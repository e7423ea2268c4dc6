"""Training data for the coarse stage: `facetwin prepare` output as in-memory tensors.

Uses the data pipeline's :class:`facetwin.data.datasets.PreparedDataset` when it is installed;
otherwise reads the prepared manifest directly (:class:`ManifestCrops`). Either way every crop
is resized to ``crop_size`` once and kept in memory as uint8 (11k crops of 128² ≈ 0.5 GB), so
loading is never the bottleneck.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from facetwin.errors import FacetwinError

# Index of each 68-point landmark's mirror partner (iBUG order).
FLIP_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)


def read_manifest(root: Path) -> list[dict]:
    """Last record per key over every manifest shard of a prepared folder."""
    records: dict[str, dict] = {}
    files = sorted(root.glob("manifest*.jsonl"))
    if not files:
        raise FacetwinError(f"no prepared data in {root} (run `facetwin prepare ... --out {root}` first)")
    for f in files:
        for line in f.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a half-written last line of a running prepare
            records[rec["key"]] = rec
    return sorted(records.values(), key=lambda r: r["key"])


class ManifestCrops(Dataset):
    """Prepared crops at ``crop_size`` with 68 landmarks, skin mask and identity index.

    ``__getitem__`` → dict(image (3, S, S) float [0, 1], landmarks (68, 2), skin_mask (1, S, S),
    identity () int64, occluder_mask (1, S, S) with augmentation). Augmentation (when
    ``augment``) is the data pipeline's :class:`facetwin.data.augment.Augmenter` (similarity
    jitter, mirror, colour, synthetic occluders) with an rng drawn from numpy's global RNG, which
    the engine seeds per sample. Landmarks: the manual annotation where the source has one
    (HELEN-train), else the automatic annotator's.
    """

    def __init__(self, root: str | Path, crop_size: int = 128, augment: bool = True, quiet: bool = False, limit: int = 0,
                 fill_border: float = 0.8, oversample: dict[str, float] | None = None, oversample_turns: float = 1.0,
                 pose_augment: dict[str, float] | None = None):
        root = Path(root)
        recs = read_manifest(root)
        if limit:
            recs = recs[:limit]
        self.crop_size = crop_size
        self.augment = augment
        n = len(recs)
        self.images = np.zeros((n, crop_size, crop_size, 3), np.uint8)
        self.masks = np.zeros((n, crop_size, crop_size), np.uint8)
        self.landmarks = np.zeros((n, 68, 2), np.float32)
        ids: dict[str, int] = {}
        self.identity = np.zeros(n, np.int64)
        self.keys = []
        it = recs
        if not quiet:
            from tqdm import tqdm

            it = tqdm(recs, desc=f"loading {root.name}", file=sys.stderr, leave=False, mininterval=2.0)
        for i, r in enumerate(it):
            img = cv2.imread(str(root / r["image"]), cv2.IMREAD_COLOR)
            if img is None:
                raise FacetwinError(f"prepared crop missing or corrupt: {root / r['image']}")
            size = img.shape[0]
            self.images[i] = cv2.resize(img, (crop_size, crop_size), interpolation=cv2.INTER_AREA)[:, :, ::-1]
            m = cv2.imread(str(root / r["skin"]), cv2.IMREAD_GRAYSCALE) if r.get("skin") else None
            if m is not None:
                self.masks[i] = cv2.resize(m, (crop_size, crop_size), interpolation=cv2.INTER_NEAREST)
            lm = np.asarray(r.get("gt_landmarks") or r["landmarks"], np.float32)
            self.landmarks[i] = lm * (crop_size / size)
            self.identity[i] = ids.setdefault(r.get("identity") or r["key"], len(ids))
            self.keys.append(r["key"])
        self.n_identities = len(ids)
        # Crops of tight sources (UTKFace: 200² face crops) are half black border, the others show
        # real context; a network learns that layout. Fill the border with another crop's
        # background (probability ``fill_border``) so both look alike.
        self.fill_border = fill_border if augment else 0.0
        # How often each crop appears per epoch (e.g. {"train/helen-train": 4}: the only manually
        # annotated in-the-wild photos are rare next to 9.8k UTKFace crops).
        self.repeats = np.ones(n, np.int64)
        for prefix, factor in (oversample or {}).items():
            hit = np.array([k.startswith(prefix) for k in self.keys], bool)
            self.repeats[hit] = max(1, int(round(factor)))
        if oversample_turns != 1.0:  # strong head turns are rare and the worst-predicted poses
            from facetwin.evaluation.nme import nose_asymmetry

            turned = np.abs(nose_asymmetry(self.landmarks)) > 0.25
            self.repeats[turned] *= max(1, int(round(oversample_turns)))
        black = (self.images.max(-1) <= 3).mean((1, 2))
        self.donors = np.where(black < 0.02)[0]
        self.augmenter = None
        if augment:
            from facetwin.data.augment import Augmenter

            self.augmenter = Augmenter(flip=0.5, **dict(pose_augment or {}))

    def __len__(self) -> int:
        return len(self.images)

    def identity_batches(self, rng: np.random.Generator, batch_size: int, per_identity: int = 2) -> list[list[int]]:
        """Batches in which images come in groups of ``per_identity`` of one identity (where the
        identity has several images), the rest filled with singles — for the shape-consistency loss."""
        by_id: dict[int, list[int]] = {}
        for i, k in enumerate(self.identity.tolist()):
            by_id.setdefault(k, []).extend([i] * int(self.repeats[i]))
        groups: list[list[int]] = []
        for members in by_id.values():
            members = [members[j] for j in rng.permutation(len(members))]
            if len(members) >= per_identity:
                for s in range(0, len(members) - per_identity + 1, per_identity):
                    groups.append(members[s:s + per_identity])
                rest = len(members) % per_identity
                groups += [[m] for m in members[len(members) - rest:]] if rest else []
            else:
                groups += [[m] for m in members]
        order = rng.permutation(len(groups))
        flat = [i for g in order for i in groups[g]]
        n = len(flat) // batch_size
        return [flat[b * batch_size:(b + 1) * batch_size] for b in range(n)]

    def __getitem__(self, i: int) -> dict:
        img = self.images[i]
        mask = self.masks[i]
        lm = self.landmarks[i].copy()
        out = {}
        if self.fill_border > 0 and len(self.donors) and np.random.rand() < self.fill_border:
            img = fill_black_border(img, self.images[self.donors[np.random.randint(len(self.donors))]])
        if self.augmenter is not None:
            rng = np.random.default_rng(int(np.random.randint(0, 2 ** 31)))
            aug = self.augmenter(img, lm.astype(np.float64), mask, rng)
            img, lm, mask = aug["image"], aug["landmarks"], aug["skin"]
            out["occluder_mask"] = torch.from_numpy(aug["occluder"].astype(np.float32))[None]
        image = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0
        out.update(
            image=image,
            landmarks=torch.from_numpy(np.asarray(lm, np.float32)),
            skin_mask=torch.from_numpy((mask > 127).astype(np.float32))[None],
            identity=torch.tensor(self.identity[i]),
        )
        return out


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


def open_dataset(cfg, quiet: bool = False) -> Dataset:
    """The coarse training set described by a :class:`CoarseDataConfig`."""
    return ManifestCrops(cfg.root, cfg.crop_size, cfg.augment, quiet=quiet, fill_border=cfg.fill_border,
                         oversample=dict(cfg.oversample), oversample_turns=cfg.oversample_turns,
                         pose_augment=dict(cfg.pose_augment))
