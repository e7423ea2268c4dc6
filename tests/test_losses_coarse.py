"""The assembled coarse objective (Eq. 2): term bookkeeping, modes, plug-ins, gradients."""

import pytest
import torch

from facetwin.losses.coarse import CoarseLossInputs, CoarseLossWeights, coarse_losses
from facetwin.losses.landmarks import inner_landmark_loss, landmark_pair_loss
from facetwin.losses.silhouette import silhouette_loss

D = torch.float64


def _inputs(B=2, V=50, H=32, grad=True, **overrides):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.rand(*s, generator=g, dtype=D)  # noqa: E731
    gt = r(B, 68, 2) * H
    fields = dict(
        landmarks2d=gt + r(B, 68, 2) * 2 - 1,
        landmarks_normal_z=r(B, 68) * 2 - 1,
        vertices2d=r(B, V, 2) * H,
        silhouette=r(B, V) < 0.3,
        shape=r(B, 10) - 0.5,
        expression=r(B, 6),
        albedo=r(B, 5) - 0.5,
        light=r(B, 9, 3),
        render=r(B, 3, H, H),
        render_mask=(r(B, 1, H, H) < 0.7).to(D),
        swapped_landmarks2d=gt + r(B, 68, 2) * 3,
        dynamic_contour2d=gt[:, :17] + r(B, 17, 2) * 4,
        image=r(B, 3, H, H),
        gt_landmarks=gt,
        skin_mask=(r(B, 1, H, H) < 0.8).to(D),
        occluder_mask=(r(B, 1, H, H) < 0.1).to(D),
    )
    fields.update(overrides)
    if grad:
        for k in ("landmarks2d", "vertices2d", "shape", "expression", "albedo", "light", "render", "swapped_landmarks2d", "dynamic_contour2d"):
            if fields.get(k) is not None:
                fields[k] = fields[k].clone().requires_grad_(True)
    return CoarseLossInputs(**fields)


def test_total_is_the_sum_of_the_weighted_terms():
    x = _inputs()
    w = CoarseLossWeights()
    total, terms = coarse_losses(x, w)
    assert set(terms) == {"silhouette", "inner_landmarks", "landmark_pairs", "photometric", "shape_reg",
                          "expression_reg", "albedo_reg", "light_reg", "shape_consistency"}
    assert torch.isclose(total, sum(terms.values()))
    crop = 32
    assert torch.isclose(terms["inner_landmarks"], w.inner_landmarks * inner_landmark_loss(x.landmarks2d, x.gt_landmarks, crop))
    assert torch.isclose(terms["landmark_pairs"], w.landmark_pairs * landmark_pair_loss(x.landmarks2d, x.gt_landmarks, crop))
    sil = silhouette_loss(x.landmarks2d[:, :17], x.landmarks_normal_z[:, :17], x.vertices2d, x.silhouette, x.gt_landmarks[:, :17], crop)
    assert torch.isclose(terms["silhouette"], w.silhouette * sil)
    # doubling one weight doubles exactly that term
    _, terms2 = coarse_losses(x, CoarseLossWeights(photometric=2 * w.photometric))
    assert torch.isclose(terms2["photometric"], 2 * terms["photometric"])
    assert torch.isclose(terms2["silhouette"], terms["silhouette"])


def test_every_prediction_receives_a_gradient():
    x = _inputs()
    total, _ = coarse_losses(x, CoarseLossWeights())
    total.backward()
    for k in ("landmarks2d", "vertices2d", "shape", "expression", "albedo", "light", "render", "swapped_landmarks2d"):
        grad = getattr(x, k).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, k
    assert x.dynamic_contour2d.grad is None  # silhouette mode ignores the marched contour


def test_marching_mode_replaces_the_silhouette_term():
    x = _inputs()
    total, terms = coarse_losses(x, CoarseLossWeights(contour_mode="marching"))
    assert "silhouette" not in terms and "marching_contour" in terms
    total.backward()
    assert x.dynamic_contour2d.grad.abs().sum() > 0
    assert x.vertices2d.grad is None  # Eq. 1's silhouette vertices are not used by the ablation
    with pytest.raises(ValueError):
        coarse_losses(_inputs(dynamic_contour2d=None), CoarseLossWeights(contour_mode="marching"))
    with pytest.raises(ValueError):
        CoarseLossWeights(contour_mode="both")


def test_optional_inputs_switch_terms_off():
    x = _inputs(render=None, swapped_landmarks2d=None, skin_mask=None, occluder_mask=None)
    total, terms = coarse_losses(x)
    assert "photometric" not in terms and "shape_consistency" not in terms
    assert torch.isfinite(total)


def test_perceptual_losses_are_pluggable():
    x = _inputs(grad=False)
    calls = []

    def fake_identity(composite, image, landmarks):
        calls.append((composite, image, landmarks))
        return (composite - image).abs().mean()

    _, terms = coarse_losses(x, CoarseLossWeights(identity=0.5), identity_loss=fake_identity)
    comp, img, lmk = calls[0]
    m = x.render_mask
    assert torch.allclose(comp, m * x.render + (1 - m) * x.image) and img is x.image and lmk is x.gt_landmarks
    assert torch.isclose(terms["identity"], 0.5 * (comp - img).abs().mean())
    # off when the weight is 0 or no callable is given; emotion / lip reading are off by default
    _, terms = coarse_losses(x, CoarseLossWeights(identity=0.0), identity_loss=fake_identity)
    assert "identity" not in terms
    _, terms = coarse_losses(x, CoarseLossWeights(), emotion_loss=fake_identity, lip_reading_loss=fake_identity)
    assert "emotion" not in terms and "lip_reading" not in terms and "identity" not in terms
    _, terms = coarse_losses(x, CoarseLossWeights(emotion=1.0, lip_reading=0.1), emotion_loss=fake_identity, lip_reading_loss=fake_identity)
    assert torch.isclose(terms["lip_reading"], 0.1 * terms["emotion"])


def test_landmark_confidences_reach_every_landmark_term():
    x = _inputs(grad=False)
    w = torch.ones(2, 68, dtype=D)
    _, base = coarse_losses(x)
    x.landmark_weight = w
    _, same = coarse_losses(x)
    for k in ("silhouette", "inner_landmarks", "landmark_pairs", "shape_consistency"):
        assert torch.isclose(base[k], same[k]), k
    x.landmark_weight = torch.zeros_like(w)
    _, zero = coarse_losses(x)
    for k in ("silhouette", "inner_landmarks", "landmark_pairs", "shape_consistency"):
        assert zero[k].item() == 0.0, k


def test_weights_from_config_reject_typos():
    w = CoarseLossWeights.from_dict({"silhouette": 3.0, "contour_mode": "marching"})
    assert w.silhouette == 3.0 and w.contour_mode == "marching"
    assert CoarseLossWeights.from_dict(w.to_dict()) == w
    with pytest.raises(ValueError, match="silhuette"):
        CoarseLossWeights.from_dict({"silhuette": 1.0})
