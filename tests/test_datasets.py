"""Datasets and identity batching."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torch.utils.data import DataLoader

from facetwin.data.annotator import annotate
from facetwin.data.augment import Augmenter
from facetwin.data.datasets import AnnotatedFolder, ImageFolder, PreparedDataset, VideoFrames
from facetwin.data.prepare import PrepareConfig, prepare
from facetwin.data.pts import write_pts
from facetwin.data.samplers import IdentityBatchSampler, identity_batches
from facetwin.errors import FacetwinError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Two people with 3 photos each, one 1-photo person, and a 6-frame clip."""
    src = tmp_path_factory.mktemp("people")
    astro = skdata.astronaut()
    for person, n in (("ann", 3), ("bob", 3), ("cid", 1)):
        (src / person).mkdir()
        for i in range(n):
            shifted = np.roll(astro, 7 * i + (20 if person == "bob" else 0), axis=1)
            Image.fromarray(shifted).save(src / person / f"{i}.jpg", quality=90)
    small = cv2.resize(astro, (256, 256), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(src / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (256, 256))
    for i in range(6):
        writer.write(cv2.cvtColor(np.roll(small, i, axis=0), cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path_factory.mktemp("prepared")
    summary = prepare([f"{src}:folder"], out, PrepareConfig(size=96, every_n_frames=1, video_fps=None), progress=False)
    assert summary["items_total"] == 13
    return out


def test_prepared_dataset_sample(prepared):
    ds = PreparedDataset(prepared, size=64)
    assert len(ds) == 13 and len(ds.identities) == 4
    s = ds[0]
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
    assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
    assert s["skin"].shape == (1, 64, 64) and set(s["skin"].unique().tolist()) <= {0.0, 1.0}
    assert s["landmarks"].shape == (68, 2) and s["transform"].shape == (2, 3)
    # Resizing to 64 scales the 96-px landmarks and the transform by 2/3.
    raw = PreparedDataset(prepared)[0]
    assert torch.allclose(s["landmarks"], raw["landmarks"] * 64 / 96, atol=1e-4)
    assert torch.allclose(s["transform"], raw["transform"] * 64 / 96, atol=1e-5)
    # Skin sits inside the landmarks' convex region, i.e. on the face: mean landmark is on skin-ish area.
    assert s["skin"].mean() > 0.1


def test_identity_batches_from_real_dataset(prepared):
    ds = PreparedDataset(prepared)
    sampler = IdentityBatchSampler(ds.identity_of, k=3, batch_size=6, strict=True, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler)
    seen = []
    for batch in loader:
        ids = batch["identity"].tolist()
        assert len(ids) == 6 and ids[:3] == [ids[0]] * 3 and ids[3:] == [ids[3]] * 3
        seen += batch["key"]
    # Strict mode: only full groups of 3 (ann, bob, the clip: 3 + 3 + 6 items = 4 groups, 2 batches; cid has 1).
    assert len(seen) == len(set(seen)) == 12
    assert not any("/cid/" in k for k in seen)


def test_identity_batches_group_by_identity_with_fixed_size_and_oversampling():
    ids = np.array([0] * 7 + [1] * 2 + [2] + [3] * 4 + list(range(4, 14)))
    batches = identity_batches(ids, np.random.default_rng(3), 8, per_identity=2)
    assert all(len(b) == 8 for b in batches) and len(batches) == len(ids) // 8  # the engine needs equal batches
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))  # each item at most once per epoch
    # pairs of one identity sit next to each other: identity 0 (7 items) gives 3 pairs + 1 single
    pairs = [(b[j], b[j + 1]) for b in batches for j in range(len(b) - 1) if ids[b[j]] == ids[b[j + 1]]]
    assert sum(1 for x, y in pairs if ids[x] == 0) >= 2
    # same rng seed, same epoch; another seed reshuffles
    assert identity_batches(ids, np.random.default_rng(3), 8, 2) == batches
    assert identity_batches(ids, np.random.default_rng(4), 8, 2) != batches
    # oversampling: an item repeated 3 times appears 3 times per epoch (when the epoch keeps all)
    reps = np.ones(len(ids), int)
    reps[9] = 3
    flat = [i for b in identity_batches(ids, np.random.default_rng(0), 1, 2, reps) for i in b]
    assert flat.count(9) == 3 and len(flat) == len(ids) + 2
    # the torch sampler is the same function, deterministic per (seed, epoch)
    sampler = IdentityBatchSampler(ids, k=2, batch_size=8, seed=3)
    first = list(sampler)
    assert first == identity_batches(ids, np.random.default_rng([3, 0]), 8, 2) and list(sampler) != first
    with pytest.raises(ValueError):
        IdentityBatchSampler([0, 1, 2], k=2, batch_size=4, strict=True)


def test_augmented_prepared_dataset_is_seeded_by_numpy(prepared):
    # the engine seeds numpy per sample; the reader draws every random choice from it
    ds = PreparedDataset(prepared, augment=Augmenter(occluder=1.0))
    np.random.seed(5)
    a = ds[1]
    np.random.seed(5)
    b = ds[1]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["landmarks"], b["landmarks"])
    assert a["occluder"].shape == (1, 96, 96) and a["occluder"].sum() > 0
    assert (a["skin"] * a["occluder"]).sum() == 0
    np.random.seed(6)
    assert not torch.equal(ds[1]["image"], a["image"])


def test_one_reader_training_options_on_a_real_prepared_folder(prepared):
    """preload, resize, border fill, oversampling and the training batch keys on real crops."""
    lazy = PreparedDataset(prepared, size=64)
    pre = PreparedDataset(prepared, size=64, preload=True)
    for i in (0, 5, 12):  # preloading changes nothing but speed
        x, y = lazy[i], pre[i]
        assert all(torch.equal(x[k], y[k]) for k in ("image", "landmarks", "skin", "transform", "identity"))
    s = pre[3]
    assert set(s) >= {"image", "landmarks", "skin", "identity", "key", "transform", "gt_landmarks", "has_gt", "reliability"}
    assert not s["has_gt"] and torch.isnan(s["gt_landmarks"]).all()  # no .pts in this folder: automatic labels
    # identities numbered in order of first appearance (the identity batches' order)
    assert pre.identities[pre.identity_of[0]] == pre.records[0]["identity"]
    # the training reader (config → dataset): augmentation and border fill on, oversampling by key prefix
    from facetwin.data.prepared import PreparedDataConfig, open_prepared

    person = pre.keys[0].rsplit("/", 1)[0] + "/"
    ds = open_prepared(PreparedDataConfig(root=str(prepared), crop_size=64, oversample={person: 3}), quiet=True)
    hit = np.array([k.startswith(person) for k in ds.keys])
    assert 0 < hit.sum() < len(ds) and (ds.repeats[hit] == 3).all() and (ds.repeats[~hit] == 1).all()
    np.random.seed(0)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 64, 64) and batch["skin"].shape == (4, 1, 64, 64)
    assert batch["occluder"].shape == (4, 1, 64, 64) and batch["landmarks"].shape == (4, 68, 2)
    with pytest.raises(FacetwinError, match="fill_border"):
        PreparedDataConfig(fill_border=1.5)


def test_annotated_image_and_video_datasets(tmp_path):
    astro = skdata.astronaut()
    Image.fromarray(astro).save(tmp_path / "a.jpg")
    lm = annotate(astro)[0][0].landmarks
    write_pts(tmp_path / "a.pts", lm)
    Image.fromarray(astro).save(tmp_path / "b.png")  # no .pts: not part of the annotated set
    ds = AnnotatedFolder(tmp_path)
    assert len(ds) == 1 and torch.allclose(ds[0]["landmarks"], torch.tensor(lm).float(), atol=1e-3)
    assert len(ImageFolder(tmp_path)) == 2
    writer = cv2.VideoWriter(str(tmp_path / "v.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 20, (64, 48))
    for i in range(40):
        writer.write(np.full((48, 64, 3), i * 5, np.uint8))
    writer.release()
    frames = list(VideoFrames(tmp_path / "v.mp4", fps=5, max_frames=6))
    assert [f["frame"] for f in frames] == [0, 4, 8, 12, 16, 20]
    assert frames[0]["image"].shape == (3, 48, 64)
    assert frames[2]["image"].mean().item() == pytest.approx(40 / 255, abs=0.02)
    with pytest.raises(FacetwinError):
        PreparedDataset(tmp_path)
