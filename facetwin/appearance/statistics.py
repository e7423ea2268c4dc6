"""Statistics behind the open albedo model: shading removal, robust PCA with missing data,
UV mirror maps and hole filling. Pure functions (numpy / torch), used by
``scripts/build_albedo_model.py`` and tested on synthetic data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facetwin.rendering.shading import sh_basis


def fit_sh_constant_albedo(colours: torch.Tensor, normals: torch.Tensor, weight: torch.Tensor, ridge: float = 1e-4) -> torch.Tensor:
    """9×3 SH lighting that best explains the colours with a constant (unit) albedo.

    Per image and channel, least squares ``colour ≈ H(n) · L_c`` over the weighted texels (the
    constant albedo is absorbed into L). A small ridge keeps images with few texels stable.

    Args:
        colours: (B, N, 3); normals: (B, N, 3) unit; weight: (B, N) ≥ 0.
    Returns:
        (B, 9, 3) lighting in the DECA convention of :mod:`facetwin.rendering.shading`.
    """
    H = sh_basis(normals)  # (B, N, 9)
    Hw = H * weight[..., None]
    A = Hw.transpose(1, 2) @ H + ridge * torch.eye(9, dtype=H.dtype, device=H.device)
    b = Hw.transpose(1, 2) @ colours
    return torch.linalg.solve(A, b)


def relative_shading(normals: torch.Tensor, light: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Shading ``H(n)·L_c`` divided by its weighted mean per image and channel: (B, N, 3).

    Dividing colours by it removes the shading and the light's colour cast relative to the
    face's average, and keeps the average colour of the skin as the albedo's level.
    """
    s = sh_basis(normals) @ light  # (B, N, 3)
    mean = (s * weight[..., None]).sum(1, keepdim=True) / weight.sum(1)[:, None, None].clamp_min(1e-6)
    return s / mean.clamp_min(1e-6)


@dataclass
class PCAResult:
    mean: np.ndarray        # (D,)
    components: np.ndarray  # (K, D) orthonormal rows
    std: np.ndarray         # (K,)
    explained: np.ndarray   # (K,) cumulative fraction of the (filled) variance
    filled: np.ndarray      # (N, D) data with missing entries replaced by the model
    weights: np.ndarray     # (N, D) final robust weights


def robust_em_pca(
    X: np.ndarray,
    W: np.ndarray,
    k: int,
    k_fill: int | None = None,
    iterations: int = 30,
    outlier_sigmas: float = 3.0,
    group: int = 1,
    seed: int = 0,
    verbose: bool = False,
) -> PCAResult:
    """PCA of data with missing and outlying entries (EM-PCA with iterative outlier rejection).

    Missing entries (W = 0) start at the column mean and are replaced each iteration by the
    rank-``k_fill`` reconstruction (soft weights blend data and reconstruction). Every few
    iterations entries whose residual exceeds ``outlier_sigmas`` robust standard deviations
    (1.4826 MAD of the observed residuals) are treated as missing; ``group`` consecutive columns
    (e.g. the 3 colour channels of a texel, stored channel-minor) are rejected together.

    Args:
        X: (N, D) data; W: (N, D) weights in [0, 1]; k: components returned.
        k_fill: rank used to fill missing values (default min(k, 20)).
    Returns:
        :class:`PCAResult` with std = singular values / sqrt(N - 1).
    """
    X = np.asarray(X, np.float64)
    W0 = np.clip(np.asarray(W, np.float64), 0, 1)
    N, D = X.shape
    k_fill = min(k, 20) if k_fill is None else k_fill
    col_w = W0.sum(0)
    mu = (W0 * X).sum(0) / np.maximum(col_w, 1e-9)
    mu[col_w <= 0] = (W0 * X).sum() / max(W0.sum(), 1e-9)
    Wr = W0.copy()
    F = Wr * X + (1 - Wr) * mu
    for it in range(iterations):
        mu = F.mean(0)
        C = F - mu
        Vt = _top_components(C, k_fill, seed)
        R = mu + (C @ Vt.T) @ Vt
        if it % 3 == 2:  # robust re-weighting
            res = np.abs(X - R)
            if group > 1:
                res = res.reshape(N, -1, group).max(-1).repeat(group, axis=1)
            obs = W0 > 0
            sigma = 1.4826 * np.median(res[obs]) if obs.any() else 1.0
            Wr = W0 * (res <= outlier_sigmas * sigma)
        F = Wr * X + (1 - Wr) * R
        if verbose:
            rms = np.sqrt((W0 * (X - R) ** 2).sum() / max(W0.sum(), 1e-9))
            print(f"EM-PCA {it + 1}/{iterations}: observed rms residual {rms:.4f}, kept {Wr.sum() / max(W0.sum(), 1e-9):.3f}", flush=True,
                  file=__import__("sys").stderr)
    mu = F.mean(0)
    C = F - mu
    U, S, Vt = np.linalg.svd(C, full_matrices=False)
    var = S**2
    return PCAResult(
        mean=mu,
        components=Vt[:k],
        std=S[:k] / np.sqrt(max(N - 1, 1)),
        explained=np.cumsum(var)[:k] / var.sum(),
        filled=F,
        weights=Wr,
    )


def _top_components(C: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(k, D) leading right singular vectors of C (via the smaller Gram matrix)."""
    N, D = C.shape
    if N <= D:
        G = C @ C.T
        w, V = np.linalg.eigh(G)
        V = V[:, ::-1][:, :k]
        w = np.sqrt(np.maximum(w[::-1][:k], 1e-12))
        return (V.T @ C) / w[:, None]
    w, V = np.linalg.eigh(C.T @ C)
    return V[:, ::-1][:, :k].T


def texel_mirror_map(positions: np.ndarray, max_distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mirror partner of every texel: the texel whose surface point is nearest to the point
    reflected at the x = 0 plane (the head model's symmetry plane).

    Args:
        positions: (N, 3) template surface points of the covered texels.
        max_distance: partners farther than this are marked invalid (default: 3 × the median
            partner distance).
    Returns:
        index (N,) and valid (N,) bool.
    """
    from scipy.spatial import cKDTree

    p = np.asarray(positions, np.float64)
    q = p * np.array([-1.0, 1.0, 1.0])
    d, idx = cKDTree(p).query(q)
    if max_distance is None:
        max_distance = 3 * float(np.median(d)) + 1e-12
    return idx, d <= max_distance


def harmonic_fill(values: np.ndarray, known: np.ndarray, domain: np.ndarray | None = None, iterations: int = 2000) -> np.ndarray:
    """Fill unknown texels smoothly from known ones (Jacobi iterations of the Laplace equation).

    Args:
        values: (C, S, S); known: (S, S) bool (kept fixed); domain: (S, S) bool texels to fill
            (default: everything). Texels outside the domain are left unchanged but still
            pass values on (so the map stays seamless under bilinear upsampling).
    Returns:
        (C, S, S) filled copy.
    """
    v = torch.as_tensor(np.array(values, np.float64))
    known_t = torch.as_tensor(np.asarray(known, bool))
    dom = torch.ones_like(known_t) if domain is None else torch.as_tensor(np.asarray(domain, bool))
    free = dom & ~known_t
    if not known_t.any():
        return v.numpy()
    # start from the known mean so far-away texels converge quickly
    fill0 = (v * known_t).sum((1, 2)) / known_t.sum()
    v = torch.where(free, fill0[:, None, None], v)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=v.dtype)[None, None]
    for _ in range(iterations):
        p = torch.nn.functional.pad(v[:, None], (1, 1, 1, 1), mode="replicate")
        avg = torch.nn.functional.conv2d(p, kernel)[:, 0] / 4
        v = torch.where(free, avg, v)
    return v.numpy()
