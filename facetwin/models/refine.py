"""Landmark refinement: the coarse model's prediction moved onto the 68 points the crop was made from.

The encoder regresses ψ, θ and the camera in one pass; its projected landmarks land 0.06
outer-eye-corner distances from human labels on HELEN-test, while the automatic annotator's own
points (which every image and tracked video frame already has: the crop is cut around them) land
0.025 away. A few Levenberg–Marquardt steps from the encoder's guess close most of that gap:

    minimise  Σ_i w_i ‖u_i(ψ, θ, s, t) − a_i‖² / d²  +  λ_ψ ‖ψ − ψ̂‖²  +  λ_θ ‖θ − θ̂‖²

over the expression ψ, the global, neck and jaw rotations θ and the orthographic camera (log s, t),
with β fixed (the identity stays the encoder's, its identity head's or the person's), ``a`` the
annotator's points, ``d`` their outer-eye-corner distance and ψ̂, θ̂ the encoder's prediction (the
priors keep the fit near it where the points say little). The Jacobian is taken by forward
differences in one batched head-model pass, which also evaluates the trial step (≈ 5 ms per
face on one thread, two steps; autograd through ``vmap`` was 4× slower at batch 1, float64 2×).
Every problem of the batch is independent (its own damping, steps accepted only where they lower
its cost).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facetwin.geometry.camera import project_orthographic
from facetwin.models.coarse import _pad
from facetwin.networks.coarse_encoder import CoarseParams

_JOINTS = (0, 1, 2)  # global, neck, jaw (the eyes are not seen by 68 landmarks)
_LEFT_OUTER, _RIGHT_OUTER = 36, 45


@dataclass
class RefineSettings:
    """How the prediction is refined (``FaceTwin(refine=...)``, ``evaluate landmarks``).

    Measured in BENCHMARKS.md ("Landmark accuracy: refinement onto the annotator's points") and
    docs/refine.md; the priors are in squared
    outer-eye-corner distances per unit of ψ (prior SDs) / of θ (radians)."""

    iterations: int = 2            # a third step changes HELEN-test by 2e-5
    expression_prior: float = 0.1  # chosen on training data against the render's likeness (benchmarks/refine_prior.py)
    pose_prior: float = 0.1
    contour_weight: float = 0.5   # the 17 jaw points: the annotator's least reliable (0.043 vs 0.021 inner)
    step: float = 1e-3            # forward-difference step (float32; 1e-4 and 3e-3 give the same fit)


@torch.no_grad()
def refine_to_landmarks(head_model, params: CoarseParams, target: torch.Tensor, crop_size: int,
                        settings: RefineSettings | None = None) -> tuple[CoarseParams, torch.Tensor]:
    """``params`` (B rows, crop-size units) with ψ, θ (global, neck, jaw) and the camera fitted to
    ``target`` (B, 68, 2) crop pixels. Rows whose target is not finite are returned unchanged.

    Returns (refined params, (B, 2) NME of the projected landmarks against ``target`` before and
    after, outer-eye-corner normalised)."""
    cfg = settings or RefineSettings()
    D = torch.float32
    dtype = params.scale.dtype
    hm = head_model
    beta = _pad(params.shape.to(D), hm.n_shape)
    e_ref, p_ref = params.expression.to(D), params.pose.to(D)
    s_ref, t_ref = params.scale.to(D), params.translation.to(D)
    B, ne = e_ref.shape
    nj = len(_JOINTS)
    n = ne + 3 * nj + 3
    target = target.to(D)
    ok = torch.isfinite(target).all(-1).all(-1)
    tgt = torch.where(ok[:, None, None], target, torch.zeros_like(target))
    unit = (tgt[:, _RIGHT_OUTER] - tgt[:, _LEFT_OUTER]).norm(dim=-1).clamp_min(1e-6)
    w = torch.ones(68, 1, dtype=D, device=target.device)
    w[:17] = cfg.contour_weight
    w = w.sqrt()
    joints = list(_JOINTS)

    def unpack(x, rows):
        """x (R, n) offsets from the prediction of ``rows`` → (ψ, θ, s, t)."""
        e = e_ref[rows] + x[:, :ne]
        p = p_ref[rows].clone()
        p[:, joints] = p[:, joints] + x[:, ne:ne + 3 * nj].reshape(-1, nj, 3)
        return e, p, s_ref[rows] * torch.exp(x[:, ne + 3 * nj]), t_ref[rows] + x[:, ne + 3 * nj + 1:] / crop_size

    def project(x, rows):
        e, p, s, t = unpack(x, rows)
        lmk = hm.landmarks(beta[rows], _pad(e, hm.n_expr), p)
        return project_orthographic(lmk, s * crop_size, t * crop_size)

    def residuals(x, rows):
        """(R, m) residuals (landmarks, then the priors) and (R, 68) landmark distances in pixels."""
        d = project(x, rows) - tgt[rows]
        r = d / unit[rows, None, None] * w
        return torch.cat([r.reshape(len(rows), -1), x[:, :ne] * cfg.expression_prior ** 0.5,
                          x[:, ne:ne + 3 * nj] * cfg.pose_prior ** 0.5], 1), d.norm(dim=-1)

    def linearise(x, jacobian: bool = True):
        """Residuals, cost, NME and (with ``jacobian``) the Jacobian (B, m, n) at x: one batched
        pass over x and its n forward-difference probes."""
        k = n + 1 if jacobian else 1
        R, dist = residuals((x[:, None] + probes[None, :k]).reshape(-1, n), rows.repeat_interleave(k))
        R = R.reshape(B, k, -1)
        J = ((R[:, 1:] - R[:, :1]) / cfg.step).transpose(1, 2) if jacobian else None
        return R[:, 0], R[:, 0].pow(2).sum(1), dist.reshape(B, k, 68)[:, 0].mean(-1) / unit, J

    rows = torch.arange(B, device=target.device)
    probes = torch.cat([torch.zeros(1, n, dtype=D), cfg.step * torch.eye(n, dtype=D)]).to(target.device)  # (n + 1, n)
    x = torch.zeros(B, n, dtype=D, device=target.device)
    r, cost, before, J = linearise(x)
    nme = before
    damping = torch.full((B,), 1e-2, dtype=D, device=target.device)
    for it in range(cfg.iterations):
        JtJ = J.transpose(1, 2) @ J
        H = JtJ + damping[:, None, None] * torch.diag_embed(torch.diagonal(JtJ, dim1=1, dim2=2) + 1e-9)
        dx = -torch.linalg.solve(H, J.transpose(1, 2) @ r[..., None])[..., 0]
        x1 = x + torch.where(ok[:, None], dx, torch.zeros_like(dx))
        last = it == cfg.iterations - 1
        r1, c1, nme1, J1 = linearise(x1, jacobian=not last)  # the next step's Jacobian comes with the trial
        better = (c1 < cost) & torch.isfinite(c1)
        x, r = torch.where(better[:, None], x1, x), torch.where(better[:, None], r1, r)
        if not last:  # a rejected step keeps the Jacobian at x and tries again with more damping
            J = torch.where(better[:, None, None], J1, J)
        cost, nme = torch.where(better, c1, cost), torch.where(better, nme1, nme)
        damping = torch.where(better, damping / 3, damping * 4)
    e, p, s, t = unpack(x, rows)
    refined = CoarseParams(shape=params.shape, expression=e.to(dtype), pose=p.to(dtype), albedo=params.albedo,
                           light=params.light, scale=s.to(dtype), translation=t.to(dtype))
    fits = torch.stack([before, nme], 1).to(torch.float64)
    return refined, torch.where(ok[:, None], fits, torch.full_like(fits, float("nan")))
