"""Synthetic known-answer detail data: renders of the head model with a known displacement map."""

import pytest
import torch
import torch.nn.functional as F

from facetwin.evaluation.synthetic_details import SyntheticDetails, tension_wrinkles


@pytest.fixture(scope="module")
def gen():
    from facetwin.headmodel import load_head_model

    return SyntheticDetails(load_head_model("open"), image_size=128, map_size=128)


@pytest.fixture(scope="module")
def sample(gen):
    with torch.no_grad():
        return gen.brow_raise(batch=2, seed=0)


def test_lines_follow_the_tension_of_a_brow_raise(gen, sample):
    D, T = sample.displacement, sample.tension_map
    assert D.shape == (2, 1, 128, 128) and (D <= 0).all() and D.min() < -0.001 and D.min() >= -0.0015
    assert (D[T <= 0] == 0).all()                       # nothing where the skin is not compressed
    # The furrows are on the forehead: the top of the detail map (v up, row 0 = top).
    mass = D.abs().sum((0, 1, 3))
    assert mass[:50].sum() > 0.95 * mass.sum()
    # Lines: down the midline of the forehead D rises and falls with the spacing (0.04 UV ≈ 5 texels).
    col = D[0, 0, :64, 64]
    crossings = ((col[1:] < -2e-4) != (col[:-1] < -2e-4)).sum()
    assert crossings >= 4                                # at least two separate furrows


def test_render_changes_where_the_displacement_is_non_zero(sample):
    diff = (sample.image - sample.coarse_image).abs().mean(1, keepdim=True)   # (B, 1, H, W)
    d_img = sample.displacement_image.abs()
    near = F.max_pool2d((d_img > 0).float(), 7, 1, 3) > 0                     # D non-zero within 3 px
    deep = d_img > 5e-4
    assert deep.sum() > 200
    assert diff[deep].mean() > 0.02                      # furrows shade visibly
    assert diff[~near].abs().max() < 1e-3               # and nothing else changes
    # The pixel map of D matches the UV truth's range.
    assert sample.displacement_image.min() >= sample.displacement.min() - 1e-9


def test_neutral_face_has_no_details(gen):
    with torch.no_grad():
        s = gen.render(torch.zeros(1, gen.model.n_expr))
    assert s.displacement.abs().max() == 0
    assert (s.image - s.coarse_image).abs().max() < 1e-6
    assert s.mask.sum() > 0.3 * 128 * 128


def test_wrinkle_function_known_answer():
    T = torch.full((1, 1, 8, 8), 0.6)
    mask = torch.ones(1, 1, 8, 8)
    D = tension_wrinkles(T, mask, depth=0.001, spacing=0.25, t_full=0.3)
    v = 1 - (torch.arange(8) + 0.5) / 8
    expect = -0.001 * 0.5 * (1 - torch.cos(2 * torch.pi * v / 0.25))
    torch.testing.assert_close(D[0, 0, :, 3], expect)
    assert (tension_wrinkles(-T, mask) == 0).all()
