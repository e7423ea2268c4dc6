"""Facial tension (Eq. 3) and its UV map T_UV."""

import math

import numpy as np
import pytest
import torch

from facetwin.geometry.mesh import cylinder, edges
from facetwin.geometry.tension import tension


@pytest.fixture(scope="module")
def model():
    from facetwin.headmodel import load_head_model

    return load_head_model("open")


def test_matches_equation_3_on_a_single_vertex():
    """Exact known answer: a fan of 3 edges shortened by 1, 2 and 0 mm."""
    rest = torch.tensor([[0.0, 0, 0], [0.01, 0, 0], [0, 0.02, 0], [0, 0, 0.03]], dtype=torch.float64)
    cur = rest.clone()
    cur[1, 0] = 0.009
    cur[2, 1] = 0.018
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 1]])
    k = 1500.0
    t = tension(cur, rest, faces, k)
    terms = [(math.exp(k * a) - math.exp(k * b)) / (math.exp(k * a) + math.exp(k * b))
             for a, b in [(0.01, 0.009), (0.02, 0.018), (0.03, 0.03)]]
    assert t[0].item() == pytest.approx(sum(terms) / 3, rel=1e-12)
    assert t[0].item() > 0                                    # compression is positive


def test_antisymmetric_bounded_and_zero_at_rest():
    v, f = cylinder(32, 6, radius=0.05, height=0.1, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    w = v + 0.004 * torch.randn(v.shape, generator=g, dtype=torch.float64)
    t = tension(w, v, f)
    np.testing.assert_allclose(tension(v, w, f).numpy(), -t.numpy(), atol=1e-15)
    assert t.abs().max() < 1 and t.abs().max() > 0.3
    assert tension(v, v, f).abs().max() == 0
    # Bounded even for huge deformations (tanh saturates, no overflow).
    big = tension(10 * w, v, f, k=1e5)
    assert torch.isfinite(big).all() and (big.abs() <= 1).all()


def test_uniform_scaling_compression_positive_stretch_negative():
    v, f = cylinder(32, 6, radius=0.05, height=0.1, dtype=torch.float64)
    assert (tension(0.95 * v, v, f) > 0).all()
    assert (tension(1.05 * v, v, f) < 0).all()
    # Rigid motion is no tension.
    R = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    assert tension(v @ R.T + 0.3, v, f).abs().max() < 1e-12


def test_gradient_matches_finite_differences():
    v, f = cylinder(8, 2, radius=0.05, height=0.1, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    w = (v + 0.002 * torch.randn(v.shape, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: tension(x, v, f, k=800.0), (w,))


def test_batched_with_shared_rest_and_edge_index():
    v, f = cylinder(16, 4, radius=0.05, height=0.1, dtype=torch.float64)
    b = torch.stack([0.97 * v, 1.02 * v])
    t = tension(b, v, f, edge_index=edges(f))
    assert t.shape == (2, v.shape[0])
    np.testing.assert_allclose(t[0].numpy(), tension(0.97 * v, v, f).numpy())


def test_brow_raise_compresses_the_forehead(model):
    """On the real open head model, browInnerUp + browOuterUp compress the forehead skin (the
    brows push it up against the fixed hairline): tension is clearly positive above the brows,
    near zero on the chin, and zero everywhere at rest."""
    data = model.data
    names = data.expression_names
    psi = torch.zeros(2, data.n_expr)
    for n in ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"):
        psi[1, names.index(n)] = 1.0
    out = model(expression=psi)
    rest = model(expression=torch.zeros(1, data.n_expr)).vertices[0]
    t = tension(out.vertices, rest, model.faces)
    assert t[0].abs().max() == 0
    v = data.v_template
    brow_y = v[data.masks["eyes"], 1].max()
    face = data.masks["face"]
    forehead = face & (v[:, 1] > brow_y + 0.01) & (v[:, 1] < brow_y + 0.04) & (np.abs(v[:, 0]) < 0.04)
    chin = face & (v[:, 1] < v[face, 1].min() + 0.03) & (np.abs(v[:, 0]) < 0.03)
    tf, tc = t[1, torch.as_tensor(forehead)], t[1, torch.as_tensor(chin)]
    assert tf.mean() > 0.1, tf.mean()
    assert (tf > 0).float().mean() > 0.8
    assert tc.abs().mean() < 0.2 * tf.mean()
    assert t[1].abs().max() < 1


def test_tension_map_in_the_detail_layout(model):
    """T_UV: the tension rasterised into the detail UV map, positive on the forehead rows."""
    from facetwin.rendering.detail_maps import tension_map
    from facetwin.rendering.uv import UVMapper

    data = model.data
    mapper = UVMapper.from_head_model(data, 128, layout="detail")
    psi = torch.zeros(1, data.n_expr)
    psi[0, data.expression_names.index("browInnerUp")] = 1.0
    rest = model().vertices
    T = tension_map(mapper, model(expression=psi).vertices, rest)
    assert T.shape == (1, 1, 128, 128)
    assert T.abs().max() < 1 and (T[mapper.mask.expand_as(T) == 0] == 0).all()
    # Forehead = the top of the map (v up, row 0 = top); mouth rows below the middle.
    top = T[0, 0, 20:45, 44:84]
    low = T[0, 0, 90:110, 44:84]
    assert top.mean() > 0.05 and top.mean() > 4 * low.abs().mean()
    # T_UV is differentiable w.r.t. the mesh.
    v = model(expression=psi).vertices.requires_grad_()
    tension_map(mapper, v, rest).sum().backward()
    assert v.grad.abs().sum() > 0
