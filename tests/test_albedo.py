"""The open albedo model: the linear model, its file, the statistics that build it, the asset."""


import numpy as np
import pytest
import torch

from facetwin.appearance.albedo import ALBEDO_FILE, AlbedoModel, load_albedo_model, uniform_albedo_model
from facetwin.appearance.statistics import (
    fit_sh_constant_albedo,
    harmonic_fill,
    relative_shading,
    robust_em_pca,
    texel_mirror_map,
)
from facetwin.errors import FacetwinError
from facetwin.rendering.shading import sh_basis

D = torch.float64


def _random_model(K=4, R=8, seed=0, out=16):
    g = np.random.default_rng(seed)
    mean = 0.4 + 0.2 * g.random((3, R, R))
    q, _ = np.linalg.qr(g.standard_normal((3 * R * R, K)))
    comps = q.T.reshape(K, 3, R, R)
    std = np.sort(g.random(K))[::-1] * 0.02 + 0.005
    return AlbedoModel(mean, comps, std, output_size=out, meta={"source": "test"})


def test_forward_is_mean_plus_scaled_components():
    m = _random_model(out=8).double()
    assert m.n_coefficients == 4 and m.resolution == 8
    alpha = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 0.0]], dtype=D)
    tex = m(alpha)
    assert tex.shape == (2, 3, 8, 8)
    assert torch.allclose(tex[0], m.mean)
    expect = m.mean + 1.0 * m.std[0] * m.components[0] - 2.0 * m.std[1] * m.components[1] + 0.5 * m.std[2] * m.components[2]
    assert torch.allclose(tex[1], expect.clamp(0, 1))
    # leading coefficients only
    assert torch.allclose(m(alpha[:, :2]), m(torch.cat([alpha[:, :2], torch.zeros(2, 2, dtype=D)], 1)))
    with pytest.raises(ValueError):
        m(torch.zeros(1, 5, dtype=D))
    assert m.truncated(2).n_coefficients == 2


def test_upsampled_output_and_gradient():
    m = _random_model(out=16).double()
    assert m(torch.zeros(1, 4, dtype=D)).shape == (1, 3, 16, 16)
    alpha = (0.1 * torch.randn(2, 4, generator=torch.Generator().manual_seed(0), dtype=D)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: m(a).square().mean(), (alpha,))


def test_project_recovers_coefficients_with_and_without_weights():
    m = _random_model(out=8).double()
    alpha = torch.tensor([[0.3, -1.2, 2.0, 0.7]], dtype=D)
    tex = m.mean + (alpha @ m.scaled_basis).reshape(1, 3, 8, 8)  # unclamped, model resolution
    assert torch.allclose(m.project(tex), alpha, atol=1e-8)
    w = torch.zeros(1, 1, 8, 8, dtype=D)
    w[..., :5, :] = 1  # only part of the texture is seen
    assert torch.allclose(m.project(tex, w), alpha, atol=1e-5)


def test_save_load_roundtrip_and_bad_files(tmp_path):
    m = _random_model()
    path = tmp_path / "albedo.npz"
    m.save(path)
    m2 = load_albedo_model(path, output_size=16)
    assert m2.meta["source"] == "test" and m2.n_coefficients == 4
    alpha = torch.tensor([[1.0, 0.5, -0.5, 2.0]])
    assert torch.allclose(m(alpha), m2(alpha), atol=2e-3)  # float16 storage
    assert load_albedo_model(path, n_components=2).n_coefficients == 2
    with pytest.raises(FacetwinError, match="not found"):
        load_albedo_model(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(FacetwinError, match="cannot read"):
        load_albedo_model(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(FacetwinError, match="not an albedo model"):
        load_albedo_model(tmp_path / "other.npz")


def test_uv_layout_check():
    from types import SimpleNamespace

    from facetwin.appearance import check_uv_layout, uv_layout_fingerprint

    faces = np.array([[0, 1, 2]])
    a = SimpleNamespace(name="a", faces=faces, uv_coords=np.array([[0, 0], [1, 0], [0, 1]], np.float32), uv_faces=faces)
    b = SimpleNamespace(name="b", faces=faces, uv_coords=np.array([[0, 0], [1, 0], [1, 1]], np.float32), uv_faces=faces)
    m = _random_model()
    check_uv_layout(m, a)  # no fingerprint stored: nothing to check
    m.meta["uv_layout"] = uv_layout_fingerprint(a)
    check_uv_layout(m, a)
    with pytest.raises(FacetwinError, match="another UV layout"):
        check_uv_layout(m, b)


def test_uniform_model_has_orthonormal_components():
    comps = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))[0].T
    m = uniform_albedo_model([0.6, 0.45, 0.4], comps, [0.1, 0.05, 0.02], resolution=4, output_size=4)
    flat = m.components.reshape(3, -1)
    assert torch.allclose(flat @ flat.T, torch.eye(3), atol=1e-6)
    tex = m(torch.tensor([[1.0, 0.0, 0.0]]))
    expect = torch.tensor([0.6, 0.45, 0.4]) + 0.1 * torch.tensor(comps[0], dtype=torch.float32)
    assert torch.allclose(tex[0, :, 2, 1], expect, atol=1e-6) and torch.allclose(tex[0, :, 0, 0], tex[0, :, 3, 3])


# -- statistics ---------------------------------------------------------------------------------

def _unit_normals(n, seed):
    v = torch.randn(1, n, 3, generator=torch.Generator().manual_seed(seed), dtype=D)
    v[..., 2] = v[..., 2].abs()  # front-facing hemisphere, like visible texels
    return torch.nn.functional.normalize(v, dim=-1)


def test_sh_fit_recovers_lighting_and_removes_shading():
    n = _unit_normals(2000, 0)
    light = torch.zeros(1, 9, 3, dtype=D)
    light[0, 0] = torch.tensor([2.0, 1.8, 1.5], dtype=D)
    light[0, 1:4] = torch.tensor([[0.3, 0.2, 0.1], [0.5, 0.5, 0.4], [0.6, 0.5, 0.5]], dtype=D)
    albedo = torch.tensor([0.7, 0.5, 0.4], dtype=D)
    colours = albedo * (sh_basis(n) @ light)
    w = torch.ones(1, 2000, dtype=D)
    est = fit_sh_constant_albedo(colours, n, w, ridge=0.0)
    assert torch.allclose(est, albedo[None, None] * light, atol=1e-8)
    s = relative_shading(n, est, w)
    assert torch.allclose(s.mean(1), torch.ones(1, 3, dtype=D))
    flat = colours / s  # constant: the mean colour of the face
    assert torch.allclose(flat, colours.mean(1, keepdim=True).expand_as(flat), atol=1e-8)


def test_robust_em_pca_recovers_a_subspace_from_incomplete_data_with_outliers():
    g = np.random.default_rng(0)
    N, Dm, K = 300, 60, 3
    basis = np.linalg.qr(g.standard_normal((Dm, K)))[0].T  # (K, D)
    coeff = g.standard_normal((N, K)) * np.array([3.0, 2.0, 1.0])
    mean = g.random(Dm)
    X = mean + coeff @ basis + 0.01 * g.standard_normal((N, Dm))
    W = (g.random((N, Dm)) > 0.3).astype(float)  # 30 % missing
    outliers = g.random((N, Dm)) < 0.02
    X_bad = np.where(outliers, X + 5.0, X)
    X_bad = np.where(W > 0, X_bad, 99.0)  # missing entries hold garbage that must be ignored
    res = robust_em_pca(X_bad, W, k=K, k_fill=K, iterations=30)
    # principal angles between the subspaces ≈ 0
    s = np.linalg.svd(res.components @ basis.T, compute_uv=False)
    assert s.min() > 0.995
    assert np.allclose(res.std, [3.0, 2.0, 1.0], rtol=0.15)
    assert np.abs(res.mean - mean).max() < 0.3
    assert res.explained[-1] > 0.99
    # a plain SVD on the zero-filled data would be far off
    naive = np.linalg.svd(np.where(W > 0, X_bad, 0) - np.where(W > 0, X_bad, 0).mean(0), full_matrices=False)[2][:K]
    assert np.linalg.svd(naive @ basis.T, compute_uv=False).min() < 0.9


def test_texel_mirror_map_pairs_symmetric_points():
    g = np.random.default_rng(0)
    half = g.random((50, 3)) + np.array([0.1, 0, 0])
    pts = np.concatenate([half, half * np.array([-1, 1, 1])])
    idx, ok = texel_mirror_map(pts)
    assert ok.all() and (idx[:50] == np.arange(50, 100)).all() and (idx[50:] == np.arange(50)).all()
    idx, ok = texel_mirror_map(np.concatenate([pts, [[5.0, 5.0, 5.0]]]))
    assert not ok[-1]


def test_harmonic_fill_reproduces_a_linear_ramp():
    S = 16
    yy, xx = np.mgrid[0:S, 0:S].astype(float)
    ramp = np.stack([0.1 * xx + 0.05 * yy, 0.3 + 0 * xx])
    known = np.ones((S, S), bool)
    known[4:12, 3:13] = False
    holes = ramp.copy()
    holes[:, ~known] = 0.0
    filled = harmonic_fill(holes, known, iterations=3000)
    assert np.abs(filled - ramp).max() < 1e-3


# -- the shipped model -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    if not ALBEDO_FILE.is_file():
        pytest.skip(f"albedo model not built ({ALBEDO_FILE})")
    return load_albedo_model()


def test_shipped_model_is_a_plausible_skin_albedo(shipped):
    m = shipped
    assert 3 <= m.n_coefficients <= 50 and m.resolution <= 128
    assert m.meta.get("source") and m.meta.get("build_command")
    flat = m.components.reshape(m.n_coefficients, -1).double()
    assert torch.allclose(flat @ flat.T, torch.eye(m.n_coefficients, dtype=D), atol=2e-2)  # float16 storage
    assert (m.std[:-1] >= m.std[1:] - 1e-6).all() and (m.std > 0).all()
    tex = m.mean_texture()
    assert tex.shape == (1, 3, 256, 256)
    # the average colour is skin-like: red > green > blue, mid brightness
    rgb = m.mean.reshape(3, -1).mean(1)
    assert rgb[0] > rgb[1] > rgb[2] and 0.3 < rgb.mean() < 0.8
    # ±2σ samples stay mostly inside [0, 1] before clamping
    g = torch.Generator().manual_seed(0)
    raw = m.mean + (2 * torch.randn(8, m.n_coefficients, generator=g).clamp(-1, 1) @ m.scaled_basis).reshape(8, 3, m.resolution, m.resolution)
    assert ((raw >= 0) & (raw <= 1)).float().mean() > 0.95


def test_shipped_model_renders_skin_coloured_faces(shipped):
    from facetwin.headmodel.registry import OPEN_MODEL_FILE, load_head_model

    if not OPEN_MODEL_FILE.is_file():
        pytest.skip("open head model not built")
    from facetwin.geometry.camera import orthographic_screen_vertices
    from facetwin.rendering import MeshRenderer, default_lighting

    from facetwin.appearance import check_uv_layout

    head = load_head_model("open")
    check_uv_layout(shipped, head.data)  # a changed UV layout needs a rebuilt albedo model
    renderer = MeshRenderer.from_head_model(head.data, image_size=64)
    out = head(batch_size=1)
    screen = orthographic_screen_vertices(out.vertices, torch.tensor([250.0]), torch.tensor([[32.0, 32.0]]))
    img = renderer.render(screen, out.vertices, shipped.mean_texture(), default_lighting(1))
    face = img.mask[0, 0] > 0
    rgb = img.image[0][:, face].mean(1)
    assert face.sum() > 200 and rgb[0] > rgb[1] > rgb[2] and rgb.min() > 0.1
