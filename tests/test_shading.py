"""Spherical-harmonics shading against analytic irradiance."""

import math

import numpy as np
import torch

from facetwin.geometry.camera import orthographic_screen_vertices
from facetwin.geometry.mesh import uv_sphere
from facetwin.rendering import MeshRenderer, sh_irradiance, shade
from facetwin.rendering.shading import DECA_CONSTANTS, sh_radiance_basis


def _fibonacci_sphere(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    r = torch.sqrt(1 - z * z)
    phi = math.pi * (1 + 5**0.5) * i
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


def test_exact_convention_is_the_irradiance_of_the_sh_radiance():
    """E(n) = ∫ L(ω) max(0, ω·n) dω for L = Σ l_k Y_k, by quadrature over the sphere."""
    g = torch.Generator().manual_seed(0)
    light = torch.randn(1, 9, 3, dtype=torch.float64, generator=g)
    normals = torch.nn.functional.normalize(torch.randn(1, 12, 3, dtype=torch.float64, generator=g), dim=-1)
    omega = _fibonacci_sphere(400_000)
    radiance = sh_radiance_basis(omega) @ light[0]  # (M, 3)
    cos = (normals[0] @ omega.T).clamp_min(0)  # (12, M)
    numeric = cos @ radiance * (4 * math.pi / omega.shape[0])
    exact = sh_irradiance(normals, light, convention="exact")[0]
    assert torch.allclose(exact, numeric, atol=2e-4, rtol=1e-3)


def test_deca_convention_differs_only_in_the_constant_band():
    g = torch.Generator().manual_seed(1)
    n = torch.nn.functional.normalize(torch.randn(2, 50, 3, dtype=torch.float64, generator=g), dim=-1)
    light = torch.randn(2, 9, 3, dtype=torch.float64, generator=g)
    deca, exact = sh_irradiance(n, light, "deca"), sh_irradiance(n, light, "exact")
    const = light[:, 0][:, None, :] * (DECA_CONSTANTS[0] * (math.pi - 1))
    assert torch.allclose(exact - deca, const.expand_as(deca))
    # DECA's values, literally: 1/sqrt(4π) and (2π/3)·sqrt(3/(4π)).
    x, y, z = n[0, 0]
    one = torch.zeros(2, 9, 3, dtype=torch.float64)
    one[:, 0, 0], one[:, 3, 1] = 1.0, 1.0
    e = sh_irradiance(n, one, "deca")[0, 0]
    assert math.isclose(e[0].item(), 1 / math.sqrt(4 * math.pi))
    assert math.isclose(e[1].item(), (2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi)) * z.item())


def test_rendered_sphere_matches_closed_form_irradiance():
    """Constant + linear light on a sphere: E(n) = a + b·n (DECA constants), per pixel."""
    v, f = uv_sphere(64, 128, dtype=torch.float64)
    s, t = 40.0, (48.0, 48.0)
    sv = orthographic_screen_vertices(v[None], torch.tensor([s], dtype=torch.float64), torch.tensor([t], dtype=torch.float64))
    light = torch.zeros(1, 9, 3, dtype=torch.float64)
    light[0, 0] = torch.tensor([0.5, 1.0, 1.5]) * math.sqrt(4 * math.pi)  # irradiance a = 0.5, 1, 1.5
    b = torch.tensor([[0.2, 0.0, -0.1], [0.3, 0.4, 0.1], [0.0, 0.0, 0.8]], dtype=torch.float64)  # (xyz, rgb)
    c1 = DECA_CONSTANTS[1]
    light[0, 1:4] = b / c1
    out = MeshRenderer(f, image_size=96).render(sv, v[None], None, light)
    ys, xs = np.mgrid[0:96, 0:96] + 0.5
    nx, ny = (xs - t[0]) / s, -(ys - t[1]) / s
    r2 = nx**2 + ny**2
    inner = r2 < 0.9**2
    nz = np.sqrt(np.clip(1 - r2, 0, 1))
    n = np.stack([nx, ny, nz], -1)
    expected = np.array([0.5, 1.0, 1.5]) + n @ b.numpy()
    got = out.irradiance[0].permute(1, 2, 0).numpy()
    assert np.abs(got[inner] - expected[inner]).max() < 2e-3
    assert (out.mask[0, 0].numpy()[inner] == 1).all()
    # Shading multiplies the albedo (grey 0.7 without a texture).
    assert np.allclose(out.image[0].permute(1, 2, 0).numpy()[inner], 0.7 * got[inner])


def test_shade_is_albedo_times_irradiance_and_differentiable():
    g = torch.Generator().manual_seed(2)
    albedo = torch.rand(2, 5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    n = torch.nn.functional.normalize(torch.randn(2, 5, 3, dtype=torch.float64, generator=g), dim=-1).requires_grad_()
    light = torch.randn(2, 9, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.allclose(shade(albedo, n, light), albedo * sh_irradiance(n, light))
    assert torch.autograd.gradcheck(shade, (albedo, n, light))
