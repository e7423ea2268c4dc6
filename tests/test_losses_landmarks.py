"""Landmark terms of Eq. 2: inner landmarks, special pairs, weighting, gradients."""

import torch

from facetwin.losses.landmarks import (
    LANDMARK_PAIRS,
    deca_landmark_weights,
    full_landmark_loss,
    inner_landmark_loss,
    landmark_loss,
    landmark_pair_loss,
)


def _labels(B=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return 40 + 120 * torch.rand(B, 68, 2, generator=g, dtype=dtype)


def test_landmark_loss_known_shift_normalised_by_crop():
    gt = _labels()
    pred = gt + torch.tensor([3.0, -4.0], dtype=gt.dtype)
    # L1 distance 7 px per point, crop 200 px
    assert torch.isclose(landmark_loss(pred, gt, 200), torch.tensor(7 / 200, dtype=gt.dtype))
    # per-image crop sizes
    sizes = torch.tensor([100.0, 350.0], dtype=gt.dtype)
    assert torch.isclose(landmark_loss(pred, gt, sizes), torch.tensor((7 / 100 + 7 / 350) / 2, dtype=gt.dtype))


def test_landmark_weight_is_a_confidence_weighted_mean():
    gt = _labels(B=1)
    pred = gt.clone()
    pred[0, 20] += torch.tensor([50.0, 0.0], dtype=gt.dtype)  # a bad label ...
    pred[0, 30] += torch.tensor([2.0, 0.0], dtype=gt.dtype)
    w = torch.ones(1, 68, dtype=gt.dtype)
    w[0, 20] = 0  # ... with zero confidence is ignored
    expect = 2 / 100 / 67
    assert torch.isclose(landmark_loss(pred, gt, 100, w), torch.tensor(expect, dtype=gt.dtype))
    # all weights zero: no contribution, no NaN
    assert landmark_loss(pred, gt, 100, torch.zeros_like(w)).item() == 0.0


def test_inner_loss_ignores_the_contour_and_averages_the_51_inner_points():
    gt = _labels()
    pred = gt.clone()
    pred[:, :17] += 30.0  # contour errors do not matter for L_inL
    assert inner_landmark_loss(pred, gt, 128).item() == 0.0
    pred[:, 17:] += torch.tensor([1.0, 1.0], dtype=gt.dtype)
    assert torch.isclose(inner_landmark_loss(pred, gt, 128), torch.tensor(2 / 128, dtype=gt.dtype))


def test_deca_weights_and_full_loss():
    w = deca_landmark_weights(torch.float64)
    assert w.shape == (68,)
    assert w[30] == 3 and w[48] == 3 and w[54] == 3 and w[5] == 2 and w[0] == 1 and w[17] == 1 and w[60] == 1.5
    gt = _labels(B=1)
    pred = gt.clone()
    pred[0, 30, 0] += 10.0  # nose tip, weight 3
    expect = 3 * 10 / 100 / w.sum()
    assert torch.isclose(full_landmark_loss(pred, gt, 100), expect)
    assert torch.isclose(full_landmark_loss(pred, gt, 100, deca_weighting=False), torch.tensor(10 / 100 / 68, dtype=gt.dtype))


def test_pair_indices_are_the_issue_pairs():
    one_based = {(a + 1, b + 1) for a, b in LANDMARK_PAIRS}
    assert one_based == {(38, 42), (39, 41), (44, 48), (45, 47), (62, 68), (63, 67), (64, 66), (51, 59), (52, 58), (53, 57)}


def test_pair_loss_is_translation_invariant_and_measures_openings():
    gt = _labels()
    shift = torch.tensor([[17.0, -9.0], [-3.0, 25.0]], dtype=gt.dtype)[:, None]
    assert landmark_pair_loss(gt + shift, gt, 100).abs().item() < 1e-12
    # per-image translation does not change the loss of an imperfect prediction either
    noisy = gt + torch.randn(gt.shape, generator=torch.Generator().manual_seed(3), dtype=gt.dtype)
    assert torch.isclose(landmark_pair_loss(noisy + shift, gt, 100), landmark_pair_loss(noisy, gt, 100))
    # an exactly known opening error: make each labelled pair vertical with gap 6, predict gap 4
    gt2 = gt.clone()
    for a, b in LANDMARK_PAIRS:
        gt2[:, b] = gt2[:, a] + torch.tensor([0.0, 6.0], dtype=gt.dtype)
    pred = gt2.clone()
    for a, b in LANDMARK_PAIRS:
        pred[:, b] = pred[:, a] + torch.tensor([0.0, 4.0], dtype=gt.dtype)
    assert torch.isclose(landmark_pair_loss(pred, gt2, 50), torch.tensor(2 / 50, dtype=gt.dtype))


def test_pair_loss_weight_uses_the_less_confident_end():
    gt = _labels(B=1)
    pred = gt.clone()
    a, b = LANDMARK_PAIRS[0]
    pred[0, b] += torch.tensor([0.0, 5.0], dtype=gt.dtype) * (gt[0, b] - gt[0, a]).sign()
    w = torch.ones(1, 68, dtype=gt.dtype)
    assert landmark_pair_loss(pred, gt, 100, landmark_weight=w) > 0
    w[0, b] = 0
    assert landmark_pair_loss(pred, gt, 100, landmark_weight=w).item() == 0.0


def test_pair_loss_gradient_is_finite_for_closed_lips():
    gt = _labels(B=1)
    pred = gt.clone()
    for a, b in LANDMARK_PAIRS:
        pred[:, b] = pred[:, a]  # coincident points: zero distance
    pred.requires_grad_(True)
    landmark_pair_loss(pred, gt, 100).backward()
    assert torch.isfinite(pred.grad).all()


def test_landmark_gradients_match_finite_differences():
    gt = _labels(B=2, seed=1)
    pred = (gt + torch.randn(gt.shape, generator=torch.Generator().manual_seed(2), dtype=gt.dtype) * 3).requires_grad_(True)
    w = torch.rand(2, 68, generator=torch.Generator().manual_seed(4), dtype=gt.dtype)
    assert torch.autograd.gradcheck(lambda p: inner_landmark_loss(p, gt, 128.0, w), (pred,))
    assert torch.autograd.gradcheck(lambda p: landmark_pair_loss(p, gt, 128.0, landmark_weight=w), (pred,))
    assert torch.autograd.gradcheck(lambda p: full_landmark_loss(p, gt, 128.0, w), (pred,))
