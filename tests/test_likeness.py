"""The likeness benchmark (facetwin.evaluation.likeness, `facetwin evaluate likeness`)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from facetwin.evaluation.likeness import (
    cosine_distances,
    euclidean_distances,
    person_folders,
    roc_auc,
    shared_offset_fraction,
    verification,
)


def test_roc_auc_hand_checked():
    # positives 0.9 and 0.7; negatives 0.8, 0.6, 0.5: 0.9 beats 3, 0.7 beats 2 → 5 of 6 pairs
    assert roc_auc([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 0]) == pytest.approx(5 / 6)
    # a tie counts one half; perfect and inverted rankings
    assert roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert roc_auc([0.1, 0.2, 0.9], [0, 0, 1]) == 1.0
    assert roc_auc([0.9, 0.2, 0.1], [0, 0, 1]) == 0.0
    # the same as counting every pair explicitly on random scores with ties
    rng = np.random.default_rng(0)
    s, y = rng.integers(0, 5, 200).astype(float), rng.random(200) < 0.3
    pairs = (s[y][:, None] > s[~y][None]).mean() + 0.5 * (s[y][:, None] == s[~y][None]).mean()
    assert roc_auc(s, y) == pytest.approx(pairs)
    with pytest.raises(ValueError):
        roc_auc([1.0, 2.0], [1, 1])


def test_verification_on_a_hand_made_layout():
    # two people, two photos each; b' (1.2, 0) sits nearer to a than to b
    x = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [1.2, 0.0]])
    ids = np.array(["a", "a", "b", "b"])
    d = euclidean_distances(x)
    assert d[0, 2] == pytest.approx(10.0) and d[1, 3] == pytest.approx(np.sqrt(2.44))
    v = verification(d, ids)
    # same pairs 1 and 8.8; different 10, 1.2, sqrt(101), sqrt(2.44): 1 is closer than all four,
    # 8.8 than two → 6 of 8 (same, different) pairs ranked right
    assert v["auc"] == pytest.approx(6 / 8)
    assert v["within"] == pytest.approx(4.9)
    assert v["between"] == pytest.approx((10 + 1.2 + np.sqrt(101) + np.sqrt(2.44)) / 4)
    # nearest neighbours: 0→1 (a), 1→0 (a), 2→3 (b), 3→0 (a, wrong): three of four right
    assert v["nn_accuracy"] == pytest.approx(0.75)
    assert (v["same_pairs"], v["different_pairs"]) == (2, 4)


def test_cosine_distance_and_shared_offset():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    d = cosine_distances(x)
    assert np.allclose(np.diag(d), 0) and d[0, 1] == pytest.approx(1) and d[0, 2] == pytest.approx(2)
    assert shared_offset_fraction(np.array([[1.0, 1.0], [1.0, 1.0]])) == pytest.approx(1.0)
    assert shared_offset_fraction(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(0.0)


def test_person_folders_needs_two_people(tmp_path):
    from facetwin.errors import FacetwinError

    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.jpg").write_bytes(b"")
    with pytest.raises(FacetwinError, match="two person"):
        person_folders(tmp_path)
    with pytest.raises(FacetwinError, match="not a folder"):
        person_folders(tmp_path / "missing")


def test_cli_bad_folder_is_one_line_and_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "facetwin", "evaluate", "likeness", str(tmp_path / "nope"), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "not a folder" in r.stderr


@pytest.fixture(scope="module")
def multi_image(shared_data):
    folder = shared_data / "multi-image"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


def test_photo_to_itself_is_zero_and_strangers_are_far(multi_image):
    """The descriptor distance of a photo's chip to itself is 0; two people are far apart."""
    from facetwin.evaluation.likeness import label_photo
    from facetwin.losses.identity import default_descriptor, face_chips

    people = person_folders(multi_image)
    a = label_photo(people[0][0], people[0][1][0])
    a2 = label_photo(people[0][0], people[0][1][1])
    b = label_photo(people[2][0], people[2][1][0])
    imgs = torch.from_numpy(np.stack([a.crop, a.crop, a2.crop, b.crop])).permute(0, 3, 1, 2).float() / 255
    lm = torch.from_numpy(np.stack([a.landmarks, a.landmarks, a2.landmarks, b.landmarks])).float()
    with torch.no_grad():
        f = default_descriptor()(face_chips(imgs, lm))
    d = (f[:, None] - f[None]).norm(dim=-1)
    assert float(d[0, 1]) < 1e-5            # the same photo
    assert 0.2 < float(d[0, 2]) < 0.6       # another photo of the same person (dlib: < 0.6)
    assert float(d[0, 3]) > 0.6             # a stranger


def test_benchmark_on_real_photos(multi_image, tmp_path):
    """The shipped model on three people of multi-image: figures in range, and a render equal
    to the photo itself would score 0 (the composite path is exercised with the real render)."""
    from facetwin.evaluation.likeness import evaluate_likeness
    from facetwin.models.coarse import load_coarse_model

    model, _ = load_coarse_model()
    res = evaluate_likeness(model, multi_image, picture=tmp_path / "likeness.png", max_people=3, progress=False,
                            per_photo=True)
    assert res["people"] == 3 and res["photos"] >= 10 and res["skipped"] == 0
    assert 0.0 <= res["beta_auc"] <= 1.0 and 0.0 <= res["nn_accuracy"] <= 1.0
    assert res["photo_descriptor_auc"] > 0.95  # dlib on the photos themselves
    # a reconstruction is further from the photo than another photo of the same person
    assert res["render_distance"] > res["photo_descriptor_within"]
    assert 0.3 < res["render_distance"] < 1.2 and 0.3 < res["mean_face_render_distance"] < 1.2
    assert len(res["per_photo"]) == res["photos"]
    from PIL import Image

    im = Image.open(tmp_path / "likeness.png")
    assert im.size[0] > 5 * 200 and im.size[1] > 3 * 200  # 5 columns, 3 people


def test_periodic_training_evaluation_reports_likeness(multi_image):
    """`eval.likeness` in the coarse config adds the likeness figures to the stage's evaluation."""
    from facetwin.paths import PACKAGE_DIR
    from facetwin.training.coarse_stage import CoarseConfig, CoarseStage
    from facetwin.training.config import load_config

    ck = PACKAGE_DIR / "checkpoints" / "coarse_encoder.safetensors"
    cfg = load_config(CoarseConfig, "coarse", [f"model.init_checkpoint={ck}", "eval.helen=", f"eval.likeness={multi_image}"])
    stage = CoarseStage(cfg, dataset=[0])

    class Info:
        device = torch.device("cpu")
        is_main = True

    stage.setup(Info())
    res = stage.evaluate(stage.model, 0)
    assert 0.0 <= res["likeness_beta_auc"] <= 1.0 and 0.3 < res["likeness_render_distance"] < 1.2
    assert not any(k.startswith("nme") for k in res)  # HELEN off
