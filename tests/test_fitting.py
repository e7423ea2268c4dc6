"""The landmark fitter: recovers known parameters, rejects bad input, fits real annotations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facetwin.errors import FacetwinError
from facetwin.geometry.camera import project_orthographic
from facetwin.headmodel import load_head_model
from facetwin.headmodel.fitting import (
    INNER,
    REGIONS_68,
    LandmarkSubsetModel,
    contour_embedding,
    fit_landmarks,
    head_yaw,
    normalised_error,
)


@pytest.fixture(scope="module")
def model():
    return load_head_model("open")


@pytest.fixture(autouse=True)
def one_thread():
    """The fit is many small ops: one thread is faster, and leaves the other core free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic(model, yaw_deg, seed=0, batch=4):
    g = torch.Generator().manual_seed(seed)
    shape = torch.randn(batch, model.n_shape, generator=g) * 0.7
    expr = torch.zeros(batch, model.n_expr)
    names = list(model.data.expression_names)
    expr[:, names.index("jawOpen")] = torch.rand(batch, generator=g) * 0.4
    expr[:, names.index("mouthSmileLeft")] = expr[:, names.index("mouthSmileRight")] = torch.rand(batch, generator=g) * 0.5
    pose = torch.zeros(batch, 5, 3)
    pose[:, 0, 1] = torch.deg2rad(torch.as_tensor(yaw_deg, dtype=torch.float32))
    pose[:, 0, 0] = torch.randn(batch, generator=g) * 0.1
    with torch.no_grad():
        out = model(shape=shape, expression=expr, pose=pose)
        f, b = contour_embedding(model, pose, "dynamic")
        from facetwin.headmodel.model import interpolate_on_faces

        lm = out.landmarks.clone()
        for i in range(batch):
            lm[i, :17] = interpolate_on_faces(out.vertices[i:i + 1], model.faces, f[i], b[i])[0]
        scale = torch.full((batch,), 1500.0)
        trans = torch.tensor([[200.0, 260.0]]).expand(batch, 2)
        pts = project_orthographic(lm, scale, trans)
    return pts, pose


def test_subset_model_matches_the_full_model(model):
    g = torch.Generator().manual_seed(1)
    shape, expr = torch.randn(2, model.n_shape, generator=g), torch.rand(2, model.n_expr, generator=g) * 0.3
    pose = torch.randn(2, 5, 3, generator=g) * 0.2
    sub = LandmarkSubsetModel(model, model.landmark_faces)
    f = model.landmark_faces.expand(2, 68)
    b = model.landmark_bary.expand(2, 68, 3)
    with torch.no_grad():
        full = model(shape=shape, expression=expr, pose=pose).landmarks
        fast = sub.points(shape, expr, pose, f, b)
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=0)


def test_fit_recovers_a_synthetic_head(model):
    yaws = [-30.0, -10.0, 15.0, 35.0]
    pts, pose = synthetic(model, yaws)
    fit = fit_landmarks(model, pts, image_size=(400, 500), iterations=250)
    assert fit.shape.shape == (4, model.n_shape) and fit.expression.shape == (4, model.n_expr)
    assert fit.pose.shape == (4, 5, 3) and fit.scale.shape == (4,) and fit.translation2d.shape == (4, 2)
    assert fit.residuals.shape == (4, 68)
    nme = normalised_error(fit.landmarks2d, pts, INNER)
    assert (nme < 0.01).all(), nme  # exact data: well under 1 % of the eye distance
    yaw = torch.rad2deg(head_yaw(fit.pose))
    assert (yaw - torch.tensor(yaws)).abs().max() < 6.0, yaw
    lo, hi = model.expression_range
    assert fit.expression.min() >= lo and fit.expression.max() <= hi
    # Residuals are in pixels of the input.
    torch.testing.assert_close(fit.residuals, (fit.landmarks2d - pts).norm(dim=-1))


def test_fit_rejects_bad_input(model):
    with pytest.raises(FacetwinError):
        fit_landmarks(model, torch.zeros(2, 5, 2))
    with pytest.raises(FacetwinError):
        fit_landmarks(model, torch.full((1, 68, 2), float("nan")))
    with pytest.raises(FacetwinError):
        fit_landmarks(model, torch.full((1, 68, 2), 5000.0), image_size=(100, 100))


@pytest.mark.data
def test_embedding_fits_real_annotations(model, shared_data):
    """HELEN-train annotations are explained to a few percent of the eye distance."""
    from facetwin.data.pts import read_pts

    files = sorted((shared_data / "train" / "helen-train").glob("*.pts"))[::29][:24]
    pts = torch.as_tensor(np.stack([read_pts(p) for p in files]), dtype=torch.float32)
    w = np.ones(68)
    w[:17] = 0.3
    fit = fit_landmarks(model, pts, weights=w)
    inner = normalised_error(fit.landmarks2d, pts, INNER).mean().item()
    contour = normalised_error(fit.landmarks2d, pts, REGIONS_68["contour"]).mean().item()
    assert inner < 0.035, inner
    assert contour < 0.08, contour
    # A plausible fit: identities near the prior, expressions not saturated.
    assert fit.shape.pow(2).mean().sqrt() < 2.0
    assert fit.expression.mean() < 0.3
