"""Photometric, regularisers, shape consistency, perceptual plug-ins and landmark marching."""

import math

import pytest
import torch

from facetwin.geometry.mesh import uv_sphere
from facetwin.losses.consistency import identity_swap_permutation, shape_consistency_loss, shape_spread_loss
from facetwin.headmodel.marching import dynamic_contour_points, head_yaw, select_dynamic_contour, yaw_bin
from facetwin.losses.marching import marching_contour_loss
from facetwin.losses.perceptual import EmbeddingDistanceLoss, composite_render, cosine_distance
from facetwin.losses.photometric import photometric_loss, photometric_mask
from facetwin.losses.regularizers import l2_regularizer, light_regularizer

D = torch.float64


# -- photometric -------------------------------------------------------------------------------

def _mask(B, H, W, boxes):
    m = torch.zeros(B, 1, H, W, dtype=D)
    for b, (y0, y1, x0, x1) in enumerate(boxes):
        m[b, :, y0:y1, x0:x1] = 1
    return m


def test_photometric_is_normalised_by_mask_area():
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=D)
    render = image + 0.1
    render[:, :, :4] += 5.0  # huge errors outside every mask
    for boxes in (((8, 12, 8, 12), (4, 30, 4, 30)), ((8, 30, 0, 32), (10, 11, 10, 11))):
        mask = _mask(2, 32, 32, boxes)
        assert torch.isclose(photometric_loss(render, image, mask), torch.tensor(0.1, dtype=D))


def test_photometric_l21_and_empty_masks():
    image = torch.zeros(2, 3, 8, 8, dtype=D)
    render = image.clone()
    render[:, 0] = 0.3
    render[:, 1] = 0.4  # per-pixel RGB error (0.3, 0.4, 0): L1 mean 0.7/3, L2,1 0.5
    mask = _mask(2, 8, 8, ((0, 8, 0, 8), (0, 0, 0, 0)))  # image 2 has an empty mask: not counted
    assert torch.isclose(photometric_loss(render, image, mask, "l1"), torch.tensor(0.7 / 3, dtype=D))
    assert torch.isclose(photometric_loss(render, image, mask, "l21"), torch.tensor(0.5, dtype=D))
    assert photometric_loss(render, image, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(ValueError):
        photometric_loss(render, image, mask, "l3")


def test_photometric_mask_combines_skin_render_and_occluder():
    render_mask = _mask(1, 10, 10, [(0, 10, 0, 6)])
    skin = _mask(1, 10, 10, [(0, 10, 3, 10)])
    occ = _mask(1, 10, 10, [(0, 5, 0, 10)])
    m = photometric_mask(render_mask.requires_grad_(True), skin, occ)
    assert not m.requires_grad
    assert m.sum().item() == 5 * 3 and m[0, 0, 5:, 3:6].eq(1).all()
    assert photometric_mask(render_mask.bool()).dtype.is_floating_point


def test_photometric_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 6, 6, generator=g, dtype=D)
    render = torch.rand(2, 3, 6, 6, generator=g, dtype=D).requires_grad_(True)
    mask = torch.rand(2, 1, 6, 6, generator=g, dtype=D)
    for norm in ("l1", "l21"):
        assert torch.autograd.gradcheck(lambda r: photometric_loss(r, image, mask, norm), (render,))


# -- regularisers ------------------------------------------------------------------------------

def test_regularisers_known_values():
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=D)
    assert l2_regularizer(x).item() == pytest.approx((25 + 1) / 2)
    assert l2_regularizer(x, 1.0).item() == pytest.approx((4 + 9 + 1 + 0) / 2)
    white = torch.ones(2, 9, 3, dtype=D) * torch.arange(9, dtype=D)[None, :, None]
    assert light_regularizer(white).item() == 0.0
    tinted = white.clone()
    tinted[..., 0] += 0.3  # red shift: deviations (0.2, -0.1, -0.1) on every coefficient
    assert light_regularizer(tinted).item() == pytest.approx((0.04 + 0.01 + 0.01) / 3)


# -- shape consistency -------------------------------------------------------------------------

def test_identity_swap_permutation_stays_within_identity_and_moves_every_shared_image():
    identity = torch.tensor([3, 3, 7, 5, 7, 3, 9])
    for seed in range(5):
        p = identity_swap_permutation(identity, torch.Generator().manual_seed(seed))
        assert sorted(p.tolist()) == list(range(7))
        assert torch.equal(identity[p], identity)
        assert p[6] == 6 and p[3] == 3  # singletons keep their own β
        assert (p[[0, 1, 2, 4, 5]] != torch.tensor([0, 1, 2, 4, 5])).all()


def _toy_landmarks(shape):
    # a linear "head model": landmarks = base + β-dependent offsets (B, 68, 2)
    basis = torch.linspace(-1, 1, 68 * 2 * 4, dtype=D).reshape(4, 136)
    return (100 + shape @ basis).reshape(-1, 68, 2)


def test_shape_consistency_is_zero_when_beta_is_shared_within_identities():
    identity = torch.tensor([0, 0, 1, 1, 1])
    person = torch.tensor([[0.5, -1.0, 2.0, 0.1], [-0.3, 0.7, 0.0, 1.5]], dtype=D)
    shape = person[identity]
    gt = _toy_landmarks(shape)  # perfectly fitted
    p = identity_swap_permutation(identity, torch.Generator().manual_seed(0))
    assert shape_consistency_loss(_toy_landmarks(shape[p]), gt, 224).item() == pytest.approx(0.0, abs=1e-12)
    assert shape_spread_loss(shape, identity).item() == pytest.approx(0.0, abs=1e-12)
    # per-image β that differ within a person are penalised, although each image fits perfectly
    shape2 = shape + 0.2 * torch.randn(shape.shape, generator=torch.Generator().manual_seed(1), dtype=D)
    gt2 = _toy_landmarks(shape2)
    assert shape_consistency_loss(_toy_landmarks(shape2), gt2, 224).item() == pytest.approx(0.0, abs=1e-12)
    assert shape_consistency_loss(_toy_landmarks(shape2[p]), gt2, 224).item() > 1e-3
    assert shape_spread_loss(shape2, identity).item() > 1e-3


def test_shape_consistency_photometric_share():
    gt = _toy_landmarks(torch.zeros(1, 4, dtype=D))
    image = torch.zeros(1, 3, 4, 4, dtype=D)
    mask = torch.ones(1, 1, 4, 4, dtype=D)
    loss = shape_consistency_loss(gt, gt, 100, swapped_render=image + 0.25, image=image, photometric_mask=mask, photometric_weight=2.0)
    assert loss.item() == pytest.approx(0.5)


# -- perceptual --------------------------------------------------------------------------------

class _MeanColour(torch.nn.Module):
    """A toy 'recognition network': mean RGB + a constant (embedding in R⁴)."""

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(3)  # must stay in eval mode inside the loss

    def forward(self, x):
        m = x.mean((2, 3))
        return torch.cat([m, torch.ones_like(m[:, :1])], 1)


def test_composite_and_embedding_distance():
    image = torch.zeros(1, 3, 4, 4, dtype=D)
    render = torch.ones(1, 3, 4, 4, dtype=D)
    mask = torch.zeros(1, 1, 4, 4, dtype=D)
    mask[..., :2, :] = 1
    comp = composite_render(render, image, mask)
    assert comp[..., :2, :].eq(1).all() and comp[..., 2:, :].eq(0).all()
    net = _MeanColour()
    loss_fn = EmbeddingDistanceLoss(net).train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert loss_fn(image + 0.5, image + 0.5).item() == pytest.approx(0.0, abs=1e-12)
    # embeddings (0.5, 0.5, 0.5, 1) vs (0, 0, 0, 1): cos = 1 / sqrt(1.75)
    assert loss_fn(comp, image).item() == pytest.approx(1 - 1 / math.sqrt(1.75))
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=D)
    b = torch.tensor([[0.0, 3.0], [0.0, 1.0]], dtype=D)
    assert cosine_distance(a, b).item() == pytest.approx(0.5)
    # the gradient reaches the composite but not the target image
    comp = comp.clone().requires_grad_(True)
    target = image.clone().requires_grad_(True)
    loss_fn(comp, target).backward()
    assert comp.grad.abs().sum() > 0 and target.grad is None


# -- landmark marching (the w/o L_sil ablation) --------------------------------------------------

def test_head_yaw_of_global_and_neck_rotations():
    pose = torch.zeros(3, 5, 3, dtype=D)
    pose[0, 0, 1] = 0.4
    pose[1, 0, 1] = -0.3
    pose[1, 1, 1] = -0.2   # yaws about a common axis add up
    pose[2, 0, 0] = 0.5    # pure pitch: no yaw
    assert torch.allclose(head_yaw(pose), torch.tensor([0.4, -0.5, 0.0], dtype=D), atol=1e-12)


def test_yaw_bin_picks_the_nearest_bin_and_clamps():
    table = torch.linspace(-0.6, 0.6, 13, dtype=D)  # 0.1 rad bins
    yaw = torch.tensor([0.0, 0.31, -0.26, 1.5, -2.0], dtype=D)
    assert yaw_bin(yaw, table).tolist() == [6, 9, 3, 12, 0]


def test_marched_contour_follows_the_selected_bin():
    verts, faces = uv_sphere(8, 16, dtype=D)
    Y = 5
    table_yaw = torch.linspace(-0.8, 0.8, Y, dtype=D)
    table_faces = torch.arange(Y * 17).reshape(Y, 17) % faces.shape[0]
    g = torch.Generator().manual_seed(0)
    table_bary = torch.rand(Y, 17, 3, generator=g, dtype=D)
    table_bary = table_bary / table_bary.sum(-1, keepdim=True)
    f, b = select_dynamic_contour(torch.tensor([0.75, -0.1], dtype=D), table_faces, table_bary, table_yaw)
    assert torch.equal(f[0], table_faces[4]) and torch.equal(f[1], table_faces[2])
    pts = dynamic_contour_points(verts[None].expand(2, -1, -1), faces, f, b)
    expect = (verts[faces[table_faces[4]]] * table_bary[4][..., None]).sum(1)
    assert torch.allclose(pts[0], expect)
    # works on projected 2-D vertices too
    assert torch.allclose(dynamic_contour_points(verts[None, :, :2], faces, f[:1], b[:1]), expect[None, :, :2])


def test_marching_contour_loss_known_value_and_gradient():
    g = torch.Generator().manual_seed(5)
    gt = torch.rand(2, 68, 2, generator=g, dtype=D) * 200
    pred = gt[:, :17] + torch.tensor([1.0, 0.0], dtype=D)
    assert torch.isclose(marching_contour_loss(pred, gt, 100, deca_weighting=False), torch.tensor(0.01, dtype=D))
    # DECA emphasis doubles points 6, 7, 11, 12 (1-based): an error on point 6 weighs 2 / 21
    pred = gt[:, :17].clone()
    pred[:, 5, 0] += 10
    assert torch.isclose(marching_contour_loss(pred, gt, 100), torch.tensor(2 * 0.1 / 21, dtype=D))
    pred = (pred + torch.randn(pred.shape, generator=g, dtype=D)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: marching_contour_loss(p, gt, 100.0), (pred,))


def test_embedding_loss_aligns_both_inputs_with_the_landmarks():
    seen = []

    def align(images, landmarks):
        seen.append(landmarks)
        return images[..., :2, :2]  # a toy "chip": the top-left 2×2 corner

    loss_fn = EmbeddingDistanceLoss(_MeanColour(), align=align)
    image = torch.zeros(1, 3, 4, 4, dtype=D)
    comp = image.clone()
    comp[..., 2:, 2:] = 1  # differs only outside the chip
    lm = torch.zeros(1, 68, 2, dtype=D)
    assert loss_fn(comp, image, lm).item() == pytest.approx(0.0, abs=1e-12)
    assert len(seen) == 2 and seen[0] is lm
    with pytest.raises(ValueError):
        loss_fn(comp, image)
