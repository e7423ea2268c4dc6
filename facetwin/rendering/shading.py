"""Spherical-harmonics (SH) shading, the paper's illumination model: ``U = A ⊙ Σ_k l_k H_k(N)``.

Lighting is (B, 9, 3): 9 SH coefficients per colour channel. Basis order and constants follow
DECA (``constant_factor`` in DECA's renderer), which is what FLAME-based regressors predict:

    k : 0   1   2   3   4    5    6    7          8
    H : c0  c1x c1y c1z c2xy c2xz c2yz c3(x²-y²)  c4(3z²-1)

with the irradiance-convolved constants ``c1 = (2π/3)·√(3/4π)``, ``c2 = (π/4)·3·√(5/12π)``,
``c3 = (π/4)·(3/2)·√(5/12π)``, ``c4 = (π/4)·(1/2)·√(5/4π)`` and ``c0 = 1/√(4π)``.

In other words ``H_k = Â_l Y_k`` (real SH ``Y``, Ramamoorthi & Hanrahan's ``Â_0 = π, Â_1 = 2π/3,
Â_2 = π/4``), except that DECA leaves the constant band without its ``π``. ``convention="exact"``
puts it back: then the result is exactly the irradiance ``E(n) = ∫ L(ω) max(0, ω·n) dω`` of a
distant radiance ``L(ω) = Σ_k l_k Y_k(ω)`` (for the 9 bands; the tests check this by numerical
integration). With ``"deca"`` (default) the constant coefficient is ``π`` times larger for the
same ambient light.
"""

from __future__ import annotations

import math

import torch

_C1 = (2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi))
_C2 = (math.pi / 4) * 3 * math.sqrt(5 / (12 * math.pi))
_C3 = (math.pi / 4) * 1.5 * math.sqrt(5 / (12 * math.pi))
_C4 = (math.pi / 4) * 0.5 * math.sqrt(5 / (4 * math.pi))
DECA_CONSTANTS = (1 / math.sqrt(4 * math.pi), _C1, _C1, _C1, _C2, _C2, _C2, _C3, _C4)
EXACT_CONSTANTS = (math.pi / math.sqrt(4 * math.pi),) + DECA_CONSTANTS[1:]

# The real SH basis Y_k in the same order (without the convolution constants).
SH_NORMALISATION = (
    1 / math.sqrt(4 * math.pi),
    math.sqrt(3 / (4 * math.pi)), math.sqrt(3 / (4 * math.pi)), math.sqrt(3 / (4 * math.pi)),
    math.sqrt(15 / (4 * math.pi)), math.sqrt(15 / (4 * math.pi)), math.sqrt(15 / (4 * math.pi)),
    0.5 * math.sqrt(15 / (4 * math.pi)), 0.25 * math.sqrt(5 / math.pi),
)


def sh_monomials(normals: torch.Tensor) -> torch.Tensor:
    """(..., 3) unit normals → (..., 9) the polynomial part [1, x, y, z, xy, xz, yz, x²-y², 3z²-1]."""
    x, y, z = normals.unbind(-1)
    return torch.stack([torch.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1], -1)


def sh_basis(normals: torch.Tensor, convention: str = "deca") -> torch.Tensor:
    """(..., 3) unit normals → (..., 9) irradiance basis ``H_k(n)`` (see the module docstring)."""
    consts = {"deca": DECA_CONSTANTS, "exact": EXACT_CONSTANTS}[convention]
    c = torch.tensor(consts, dtype=normals.dtype, device=normals.device)
    return sh_monomials(normals) * c


def sh_radiance_basis(directions: torch.Tensor) -> torch.Tensor:
    """(..., 3) unit directions → (..., 9) real SH ``Y_k`` (the radiance the coefficients describe)."""
    c = torch.tensor(SH_NORMALISATION, dtype=directions.dtype, device=directions.device)
    return sh_monomials(directions) * c


def sh_irradiance(normals: torch.Tensor, lighting: torch.Tensor, convention: str = "deca") -> torch.Tensor:
    """Irradiance ``Σ_k l_k H_k(n)`` per colour channel.

    Args:
        normals: (B, ..., 3) unit normals (any number of middle dims, e.g. (B, H, W, 3)).
        lighting: (B, 9, C) SH coefficients (C = 3 colour channels usually).
    Returns:
        (B, ..., C).
    """
    basis = sh_basis(normals, convention)  # (B, ..., 9)
    B = basis.shape[0]
    flat = basis.reshape(B, -1, 9)
    out = torch.bmm(flat, lighting.to(basis.dtype))  # (B, P, C)
    return out.reshape(*basis.shape[:-1], lighting.shape[-1])


def sh_irradiance_packed(normals: torch.Tensor, lighting: torch.Tensor, counts: list[int], convention: str = "deca") -> torch.Tensor:
    """Irradiance of packed pixels: (N, 3) normals whose first ``counts[0]`` rows belong to image 0,
    the next ``counts[1]`` to image 1, ...; lighting (B, 9, C) → (N, C).

    Computed as one (C, 9) × (9, n_b) product per image: much faster on CPU than (n_b, 9) × (9, C).
    """
    consts = {"deca": DECA_CONSTANTS, "exact": EXACT_CONSTANTS}[convention]
    c = torch.tensor(consts, dtype=normals.dtype, device=normals.device)
    x, y, z = normals.unbind(-1)
    basis_t = torch.stack([torch.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1], 0)  # (9, N)
    light_t = (lighting.to(normals.dtype) * c[None, :, None]).transpose(1, 2)  # (B, C, 9)
    parts = torch.split(basis_t, counts, dim=1)
    return torch.cat([light_t[b] @ part for b, part in enumerate(parts)], 1).T


def shade(albedo: torch.Tensor, normals: torch.Tensor, lighting: torch.Tensor, convention: str = "deca") -> torch.Tensor:
    """The paper's shaded texture ``A ⊙ Σ_k l_k H_k(N)``.

    Args:
        albedo: (B, ..., C) channels last (e.g. sampled per pixel, (B, H, W, 3)).
        normals: (B, ..., 3) unit normals at the same places.
        lighting: (B, 9, C).
    Returns:
        (B, ..., C).
    """
    return albedo * sh_irradiance(normals, lighting, convention)


def default_lighting(batch: int = 1, ambient: float = 0.4, directional: tuple[float, float, float] = (0.0, 0.35, 0.6), channels: int = 3, **tensor_kwargs) -> torch.Tensor:
    """A simple front-top light for pictures, (B, 9, C): a constant band plus a linear band.

    With the DECA constants the irradiance is ``ambient + d·n`` for ``d = directional``.
    """
    light = torch.zeros(batch, 9, channels, **tensor_kwargs)
    light[:, 0] = ambient * math.sqrt(4 * math.pi)
    light[:, 1:4] = torch.tensor(directional, **tensor_kwargs)[:, None] / _C1
    return light
