"""Detection, 68-point labels, reliability, crops and NME."""

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from facetwin.data.alignment import apply_affine, crop_square, crop_transform, invert_affine, warp
from facetwin.data.annotator import MIRROR_68, annotate
from facetwin.data.skin import skin_mask
from facetwin.evaluation.nme import ced, nme, nme_by_pose, nose_asymmetry, per_image_nme


@pytest.fixture(scope="module")
def astro():
    return skdata.astronaut()


@pytest.fixture(scope="module")
def astro_label(astro):
    labels, reason = annotate(astro)
    assert reason is None and len(labels) == 1
    return labels[0]


def test_mirror_permutation_is_an_involution():
    assert sorted(MIRROR_68.tolist()) == list(range(68))
    assert np.array_equal(MIRROR_68[MIRROR_68], np.arange(68))
    assert MIRROR_68[36] == 45 and MIRROR_68[0] == 16 and MIRROR_68[30] == 30


def test_astronaut_face_is_found_and_plausible(astro_label):
    lm = astro_label.landmarks
    assert astro_label.reliability > 0.5
    # The astronaut's face lies roughly in x 150..260, y 60..200 of the 512² image.
    assert 140 < lm[:, 0].min() and lm[:, 0].max() < 280 and 50 < lm[:, 1].min() and lm[:, 1].max() < 220
    # Anatomical order: eyes above nose tip above mouth above chin; point 37 left of point 46.
    assert lm[36, 0] < lm[45, 0]
    assert lm[36:48, 1].mean() < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]


def test_labels_follow_a_mirrored_image(astro, astro_label):
    labels, _ = annotate(np.ascontiguousarray(astro[:, ::-1]))
    back = labels[0].landmarks[MIRROR_68].copy()
    back[:, 0] = astro.shape[1] - back[:, 0]
    iod = np.linalg.norm(astro_label.landmarks[36] - astro_label.landmarks[45])
    assert np.linalg.norm(back - astro_label.landmarks, axis=1).mean() / iod < 0.03


def test_no_face_and_several_faces(astro):
    labels, reason = annotate(np.full((300, 300, 3), 128, np.uint8))
    assert labels == [] and reason == "no face"
    small = cv2.resize(astro, (400, 400), interpolation=cv2.INTER_AREA)
    two = np.hstack([astro, np.pad(small, ((0, 112), (0, 0), (0, 0)), constant_values=255)])
    main, _ = annotate(two, faces="main")
    assert len(main) == 1 and main[0].landmarks[:, 0].max() < 512  # the larger one
    everyone, _ = annotate(two, faces="all")
    usable = [l for l in everyone if l.ok]
    assert len(usable) == 2 and usable[0].size > usable[1].size and usable[1].landmarks[:, 0].min() > 512
    twins = np.hstack([astro, astro])
    labels, reason = annotate(twins, faces="single")
    assert labels == [] and reason.startswith("several faces")


def test_small_face_is_rejected(astro):
    tiny = cv2.resize(astro, (200, 200), interpolation=cv2.INTER_AREA)
    canvas = np.full((400, 400, 3), 90, np.uint8)
    canvas[100:300, 100:300] = tiny
    labels, reason = annotate(canvas, min_face=60)
    assert labels and reason is not None and reason.startswith("face too small")


def test_crop_transform_roundtrip_and_warp(astro, astro_label):
    centre, side = crop_square(astro_label.landmarks, 1.6)
    A = crop_transform(centre, side, 224)
    lm_crop = apply_affine(A, astro_label.landmarks)
    assert np.allclose(apply_affine(invert_affine(A), lm_crop), astro_label.landmarks)
    assert lm_crop.min() > 0 and lm_crop.max() < 224
    # Warping respects the corner convention: a single bright pixel lands where A sends its centre.
    img = np.zeros((100, 100), np.uint8)
    img[20, 10] = 255  # centre at (10.5, 20.5)
    B = np.array([[3.0, 0.0, 5.0], [0.0, 3.0, -7.0]])
    out = warp(img, B, 300).astype(float)
    ys, xs = np.nonzero(out)
    w = out[ys, xs]
    centroid = np.array([(xs * w).sum() / w.sum() + 0.5, (ys * w).sum() / w.sum() + 0.5])
    assert np.allclose(centroid, apply_affine(B, np.array([10.5, 20.5])), atol=0.05)


def test_skin_mask_covers_cheeks_not_eyes(astro, astro_label):
    centre, side = crop_square(astro_label.landmarks, 1.6)
    A = crop_transform(centre, side, 224)
    crop = warp(astro, A, 224)
    lm = apply_affine(A, astro_label.landmarks)
    mask = skin_mask(crop, lm) > 0
    cheek = np.round((lm[41] + lm[31] + lm[3]) / 3).astype(int)
    nose = np.round(lm[29]).astype(int)
    assert mask[cheek[1], cheek[0]] and mask[nose[1], nose[0]]
    for p in (lm[36:42].mean(0), lm[42:48].mean(0), lm[48:60].mean(0), [5, 5], [112, 5]):
        x, y = np.round(p).astype(int)
        assert not mask[y, x]
    assert 0.1 < mask.mean() < 0.6


def test_nme_known_answers():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (5, 68, 2))
    gt[:, 36] = [10.0, 50.0]
    gt[:, 45] = [50.0, 50.0]  # inter-ocular 40
    pred = gt + np.array([3.0, 4.0])  # every point 5 px off
    out = nme(pred, gt)
    assert out["overall"] == pytest.approx(5 / 40) and out["boundary"] == pytest.approx(5 / 40)
    pred = gt.copy()
    pred[:, :17] += [0.0, 8.0]
    per = per_image_nme(pred, gt)
    assert per["boundary"] == pytest.approx(np.full(5, 0.2))
    assert per["inner"] == pytest.approx(np.zeros(5))
    assert per["overall"] == pytest.approx(np.full(5, 0.2 * 17 / 68))
    t, frac, auc = ced(np.array([0.01, 0.03, 0.2]), max_error=0.08)
    assert frac[0] == 0 and frac[-1] == pytest.approx(2 / 3)
    assert auc == pytest.approx(((0.08 - 0.01) + (0.08 - 0.03)) / 3 / 0.08, abs=0.01)


def test_nose_asymmetry_and_pose_bins_known_answers():
    lm = np.zeros((3, 68, 2))
    lm[:, 0], lm[:, 16] = [-4.0, 0.0], [4.0, 0.0]
    lm[0, 30] = [0.0, 3.0]  # frontal: nose tip on the symmetry axis
    lm[1, 30] = [2.0, 0.0]  # distances 6 and 2 → (6 - 2) / 8
    lm[2] = lm[1] * [-1.0, 1.0]  # its mirror image (contour ends swap sides)
    lm[2, [0, 16]] = lm[2, [16, 0]]
    a = nose_asymmetry(lm)
    assert a == pytest.approx([0.0, 0.5, -0.5])
    per = {"overall": np.array([0.1, 0.2, 0.4])}
    bins = nme_by_pose(per, a)
    assert bins["frontal"] == {"images": 1, "overall": pytest.approx(0.1)}
    assert bins["large"] == {"images": 2, "overall": pytest.approx(0.3)}
    assert bins["moderate"]["images"] == 0 and np.isnan(bins["moderate"]["overall"])


@pytest.mark.data
def test_annotator_nme_on_helen_test(shared_data):
    from facetwin.cli.evaluate_annotator import evaluate_annotator

    res = evaluate_annotator(shared_data / "eval" / "helen-test", limit=25, progress=False)
    assert res["n_images"] == 25
    assert res["n_evaluated"] >= 20
    assert res["nme_overall"] < 0.05  # dlib's published 300-W level is ~3-4 % (outer-eye normalised)
    assert res["nme_inner"] < res["nme_boundary"]


def test_evaluate_annotator_cli(tmp_path, astro, astro_label, capsys):
    import json

    from PIL import Image

    from facetwin.cli.main import main
    from facetwin.data.pts import write_pts

    Image.fromarray(astro).save(tmp_path / "a.png")
    gt = astro_label.landmarks.copy()
    gt[:17] += [0.0, 6.0]  # a known 6-px error on the jaw only
    write_pts(tmp_path / "a.pts", gt)
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "blank.png")
    write_pts(tmp_path / "blank.pts", gt)
    assert main(["evaluate", "annotator", str(tmp_path), "--json", "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    iod = np.linalg.norm(gt[36] - gt[45])
    assert res["n_images"] == 2 and res["n_evaluated"] == 1 and res["filtered_reasons"] == {"no face": 1}
    assert res["nme_inner"] == pytest.approx(0.0, abs=1e-9)
    assert res["nme_boundary"] == pytest.approx(6.0 / iod, rel=1e-6)
    assert main(["evaluate", "annotator", str(tmp_path / "nowhere")]) == 2
