"""L_sil (Eq. 1): known geometry, the visible/occluded switch, gradients, a rotated mesh."""

import math

import pytest
import torch

from facetwin.geometry.camera import project_orthographic
from facetwin.geometry.mesh import uv_sphere
from facetwin.geometry.rotation import axis_angle_to_matrix
from facetwin.losses.silhouette import match_silhouette, silhouette_loss
from facetwin.rendering.silhouette import landmark_normal_z, silhouette_vertices

D = torch.float64


def _scene(normal_z0: float):
    """One image: 17 contour points, label 0 at the origin, the rest already fitted."""
    gt = torch.stack([torch.arange(17, dtype=D) * 10 + 50, torch.full((17,), 80.0, dtype=D)], -1)[None]
    gt[0, 0] = torch.tensor([0.0, 0.0], dtype=D)
    contour = gt.clone()
    contour[0, 0] = torch.tensor([2.0, -3.0], dtype=D)  # predicted landmark: L1 distance 5
    nz = torch.full((1, 17), 0.5, dtype=D)
    nz[0, 0] = normal_z0
    vertices = torch.tensor([[
        [6.0, 6.0],     # 0: L2-nearest (8.49) but L1 12
        [11.0, 0.0],    # 1: L1-nearest silhouette vertex (11)
        [1.0, 1.0],     # 2: nearest of all, but not a silhouette vertex (e.g. on the nose)
        [300.0, 300.0],  # 3: far silhouette vertex
        [40.0, 0.0],    # 4: not silhouette
    ]], dtype=D)
    sil = torch.tensor([[True, True, False, True, False]])
    return contour, nz, vertices, sil, gt


def test_occluded_landmark_matches_the_L1_nearest_silhouette_vertex():
    contour, nz, v, sil, gt = _scene(normal_z0=-0.2)
    m = match_silhouette(contour, nz, v, sil, gt)
    assert m.occluded[0].tolist() == [True] + [False] * 16
    assert m.vertex[0, 0].item() == 1 and (m.vertex[0, 1:] == -1).all()
    assert torch.equal(m.target[0, 0], v[0, 1])
    assert m.distance[0, 0].item() == 11.0 and m.distance[0, 1:].abs().max().item() == 0.0
    assert torch.isclose(silhouette_loss(contour, nz, v, sil, gt, 100.0), torch.tensor(11 / 100 / 17, dtype=D))


def test_visible_landmark_uses_plain_reprojection():
    contour, nz, v, sil, gt = _scene(normal_z0=0.2)
    m = match_silhouette(contour, nz, v, sil, gt)
    assert not m.occluded.any() and (m.vertex == -1).all()
    assert torch.isclose(silhouette_loss(contour, nz, v, sil, gt, 100.0), torch.tensor(5 / 100 / 17, dtype=D))
    # zero normal z counts as occluded (Eq. 1 only keeps N_z > 0 as visible)
    nz[0, 0] = 0.0
    assert match_silhouette(contour, nz, v, sil, gt).occluded[0, 0]


def test_no_silhouette_vertex_falls_back_to_the_landmark():
    contour, nz, v, sil, gt = _scene(normal_z0=-0.2)
    none = torch.zeros_like(sil)
    m = match_silhouette(contour, nz, v, none, gt)
    assert m.fallback[0, 0] and not m.fallback[0, 1:].any()
    assert m.distance[0, 0].item() == 5.0
    v = v.clone().requires_grad_(True)
    c = contour.clone().requires_grad_(True)
    loss = silhouette_loss(c, nz, v, none, gt, 100.0)
    loss.backward()
    assert torch.isfinite(loss) and v.grad.abs().sum() == 0 and torch.isfinite(c.grad).all()


def test_batch_images_are_matched_independently():
    a = _scene(-0.2)
    b = _scene(0.3)
    batch = [torch.cat([x, y]) for x, y in zip(a, b)]
    batch[3][1] = torch.tensor([True, False, True, True, False])  # image 2: vertex 2 is a silhouette vertex
    m = match_silhouette(*batch)
    assert m.vertex[0, 0] == 1 and m.vertex[1, 0] == -1
    batch[1][1, 0] = -0.3
    m = match_silhouette(*batch)
    assert m.vertex[0, 0] == 1 and m.vertex[1, 0] == 2


def test_gradient_flows_to_the_matched_vertex_only():
    contour, nz, v, sil, gt = _scene(normal_z0=-0.2)
    v = v.clone().requires_grad_(True)
    contour = contour.clone().requires_grad_(True)
    silhouette_loss(contour, nz, v, sil, gt, 100.0).backward()
    expect = torch.zeros_like(v)
    expect[0, 1] = torch.tensor([1.0, 0.0], dtype=D) / 100 / 17  # d|x|/dx at x = 11, y = 0 (sign(0) = 0)
    assert torch.allclose(v.grad, expect)
    assert contour.grad[0, 0].abs().sum() == 0  # the occluded landmark itself gets no pull


def test_silhouette_loss_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(0)
    B, V = 2, 40
    v = (torch.rand(B, V, 2, generator=g, dtype=D) * 200).requires_grad_(True)
    contour = (torch.rand(B, 17, 2, generator=g, dtype=D) * 200).requires_grad_(True)
    gt = torch.rand(B, 17, 2, generator=g, dtype=D) * 200
    nz = torch.randn(B, 17, generator=g, dtype=D)
    sil = torch.rand(B, V, generator=g) < 0.4
    w = torch.rand(B, 17, generator=g, dtype=D)
    assert (nz < 0).any() and (nz > 0).any()
    assert torch.autograd.gradcheck(lambda c, x: silhouette_loss(c, nz, x, sil, gt, 224.0, w), (contour, v))


def _rotated_sphere(yaw_deg: float):
    verts, faces = uv_sphere(24, 48, radius=1.0, dtype=D)
    R = axis_angle_to_matrix(torch.tensor([0.0, math.radians(yaw_deg), 0.0], dtype=D))
    return (verts @ R.T)[None], faces


def test_rotated_sphere_far_side_points_snap_to_the_outline():
    # "contour landmarks": vertices on the +x side, slightly in front at zero pose (z > 0)
    verts0, faces = uv_sphere(24, 48, radius=1.0, dtype=D)
    ids = torch.nonzero((verts0[:, 0] > 0.8) & (verts0[:, 2] > 0.05) & (verts0[:, 2] < 0.45)).flatten()[:17]
    assert len(ids) == 17
    # landmark embedding as (triangle, barycentric) on a triangle using that vertex as corner 0
    tri = torch.stack([torch.nonzero((faces == i).any(1)).flatten()[0] for i in ids])
    bary = (faces[tri] == ids[:, None]).to(D)
    for yaw, expect_occluded in ((0.0, False), (70.0, True)):
        verts, _ = _rotated_sphere(yaw)
        nz = landmark_normal_z(verts, faces, tri, bary)
        sil = silhouette_vertices(verts, faces)
        s, t = torch.tensor([50.0], dtype=D), torch.tensor([[100.0, 100.0]], dtype=D)
        v2d = project_orthographic(verts, s, t)
        lm2d = v2d[:, ids]
        # an annotator puts each contour label on the visible outline (radius 50 circle) at the
        # landmark's height, on the far side (+x in the image)
        dy = lm2d[..., 1] - 100
        gt = torch.stack([100 + (50**2 - dy**2).clamp_min(0).sqrt(), lm2d[..., 1]], -1)
        m = match_silhouette(lm2d, nz, v2d, sil, gt)
        assert bool(m.occluded.all()) == expect_occluded and bool(m.occluded.any()) == expect_occluded
        if expect_occluded:
            assert (m.vertex >= 0).all() and sil[0, m.vertex[0]].all()
            # the matched outline vertices are much closer to the labels than the hidden landmarks
            vanilla = (gt - lm2d).abs().sum(-1)
            assert m.distance.max() < 1.0 and vanilla.min() > 10.0


@pytest.fixture(scope="module")
def open_head():
    from facetwin.headmodel.registry import OPEN_MODEL_FILE, load_head_model

    if not OPEN_MODEL_FILE.is_file():
        pytest.skip(f"open head model not built ({OPEN_MODEL_FILE})")
    return load_head_model("open").double()


@pytest.mark.parametrize("yaw_deg", [60.0, -60.0])
def test_open_head_model_strong_yaw_occludes_far_contour_and_matches_outline(open_head, yaw_deg):
    h = open_head
    d = h.data
    pose = torch.zeros(1, 5, 3, dtype=D)
    pose[0, 0, 1] = math.radians(yaw_deg)
    out = h(pose=pose)
    faces = h.faces
    contour_faces, contour_bary = h.landmark_faces[:17], h.landmark_bary[:17]
    # frontal: every zero-pose boundary landmark faces the camera
    assert (landmark_normal_z(h(batch_size=1).vertices.double(), faces, contour_faces, contour_bary) > 0).all()
    nz = landmark_normal_z(out.vertices, faces, contour_faces, contour_bary)
    sil = silhouette_vertices(out.vertices, faces, torch.as_tensor(d.silhouette_candidates))
    s, t = torch.tensor([1000.0], dtype=D), torch.tensor([[128.0, 128.0]], dtype=D)
    v2d = project_orthographic(out.vertices, s, t)
    lm2d = project_orthographic(out.landmarks, s, t)[:, :17]
    # the far side is the subject's left (model x > 0, labels 10–17) when the head turns to +y
    rest_x = h(batch_size=1).landmarks[0, :17, 0]
    far = rest_x > 0 if yaw_deg > 0 else rest_x < 0
    occluded = nz[0] <= 0
    assert occluded[far].float().mean() >= 0.75 and not occluded[~far].any()
    # annotators slide hidden contour labels onto the outline: label = an outline vertex + 1 px
    idx = torch.cdist(lm2d, v2d.masked_fill(~sil[..., None], 1e9)).argmin(-1)  # (1, 17)
    gt = lm2d.clone()
    gt[occluded[None]] = v2d[0, idx[0]][occluded] + torch.tensor([0.6, -0.4], dtype=D)
    m = match_silhouette(lm2d, nz, v2d, sil, gt)
    k = torch.nonzero(occluded).flatten()
    assert (m.vertex[0, k] >= 0).all() and sil[0, m.vertex[0, k]].all()
    excluded = torch.as_tensor(d.masks["nose"] | d.masks["ears"])
    assert not excluded[m.vertex[0, k]].any()
    assert (m.distance[0, k] <= 1.0 + 1e-9).all()  # the nearest outline vertex is within the offset
    vanilla = (gt - lm2d).abs().sum(-1)[0, k]
    assert vanilla.mean() > 5 * m.distance[0, k].mean() and vanilla.max() > 10
    # the loss is differentiable w.r.t. the head model's parameters through the matched vertices
    beta = torch.zeros(1, h.n_shape, dtype=D, requires_grad=True)
    out = h(shape=beta, pose=pose)
    v2d = project_orthographic(out.vertices, s, t)
    lm2d = project_orthographic(out.landmarks, s, t)[:, :17]
    silhouette_loss(lm2d, nz, v2d, sil, gt, 256.0).backward()
    assert torch.isfinite(beta.grad).all() and beta.grad.abs().sum() > 0
