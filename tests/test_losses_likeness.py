"""Learning-signal pieces of issue #14: β spread across photos of one person, face-region
composites for the perceptual terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facetwin.losses.coarse import CoarseLossInputs, CoarseLossWeights, coarse_losses
from facetwin.losses.consistency import shape_spread_loss
from facetwin.rendering.regions import region_mask, region_triangles


def test_shape_spread_known_value_and_exclusions():
    beta = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0], [7.0, 7.0], [9.0, 9.0]])
    ids = torch.tensor([4, 4, 8, -1, -1])
    # person 4: mean (2, 0), deviations 1 and 1; person 8 is alone; unknowns are not a person
    assert float(shape_spread_loss(beta, ids)) == pytest.approx(1.0)
    assert float(shape_spread_loss(beta, torch.tensor([0, 1, 2, 3, 4]))) == 0.0
    assert float(shape_spread_loss(beta, torch.tensor([0, 0, 0, 0, 0]))) > 0


def test_shape_spread_gradient_matches_finite_differences():
    torch.manual_seed(0)
    beta = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 0, 0, 1, 1, 2, -1])
    assert torch.autograd.gradcheck(lambda b: shape_spread_loss(b, ids), (beta,))
    # analytic: d/dβ_i = 2 (β_i - mean) / n_images_in_multi_groups
    g, = torch.autograd.grad(shape_spread_loss(beta, ids), beta)
    m0 = beta[:3].mean(0)
    assert torch.allclose(g[0], 2 * (beta[0] - m0) / 5)
    assert torch.all(g[5:] == 0)


def _inputs(B=2, S=32, V=10):
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    return CoarseLossInputs(
        landmarks2d=r(B, 68, 2) * S, landmarks_normal_z=r(B, 68), vertices2d=r(B, V, 2) * S,
        silhouette=torch.zeros(B, V, dtype=torch.bool), shape=r(B, 4), expression=r(B, 3), albedo=r(B, 3),
        light=r(B, 9, 3), image=r(B, 3, S, S), gt_landmarks=r(B, 68, 2) * S, render=r(B, 3, S, S),
        render_mask=torch.ones(B, 1, S, S), identity=torch.tensor([3, 3]),
    )


def test_perceptual_region_pastes_only_the_face_and_spread_term_is_weighted():
    x = _inputs()
    face = torch.zeros(2, 1, 32, 32)
    face[:, :, 8:24, 8:24] = 1
    x.perceptual_mask = face
    seen = {}

    def fake_identity(composite, image, landmarks):
        seen["composite"] = composite
        return (composite - image).abs().mean()

    w = CoarseLossWeights(identity=1.0, shape_spread=0.5)
    total, terms = coarse_losses(x, w, identity_loss=fake_identity)
    c = seen["composite"]
    assert torch.equal(c[:, :, :8], x.image[:, :, :8])            # outside the face: the photo
    assert torch.allclose(c[:, :, 8:24, 8:24], x.render[:, :, 8:24, 8:24])  # inside: the render
    assert float(terms["shape_spread"]) == pytest.approx(0.5 * float(shape_spread_loss(x.shape, x.identity)))
    assert "shape_spread" not in coarse_losses(x, CoarseLossWeights(), identity_loss=fake_identity)[1]
    with pytest.raises(ValueError):
        CoarseLossWeights(perceptual_region="scalp")


def test_region_triangles_and_mask():
    faces = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    masks = {"face": np.array([1, 1, 1, 1, 0], bool), "ears": np.array([0, 0, 0, 1, 0], bool)}
    assert region_triangles(faces, masks).tolist() == [True, False, False]
    from facetwin.rendering.rasterizer import Fragments

    ids = torch.tensor([[[-1, 0], [1, 2]]])
    frag = Fragments(ids, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(3, 0), torch.zeros(0, dtype=torch.long))
    m = region_mask(frag, torch.tensor([True, False, True]))
    assert m.shape == (1, 1, 2, 2) and m[0, 0].tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_face_region_of_the_open_head_model_leaves_out_scalp_ears_and_neck():
    from facetwin.headmodel import load_head_model

    data = load_head_model("open").data
    tri = region_triangles(data.faces, data.masks)
    inside = np.zeros(data.n_vertices, bool)
    inside[data.faces[tri].ravel()] = True
    assert not (inside & data.masks["ears"]).any() and not (inside & data.masks["neck"]).any()
    assert inside[data.masks["nose"]].mean() > 0.9
    assert 0.2 < tri.mean() < 0.8  # the face, not the whole head
