"""Fit a head model to 2D landmarks with an orthographic camera (``u = s Π(v) + t``).

Reusable by every stage that needs model parameters for annotated or detected landmarks
(embedding review, albedo statistics, initialisations):

    from facetwin.headmodel import load_head_model
    from facetwin.headmodel.fitting import fit_landmarks
    fit = fit_landmarks(load_head_model("open"), landmarks2d)   # (B, 68, 2) pixels, 0-based
    fit.shape, fit.expression, fit.pose, fit.scale, fit.translation2d, fit.residuals

All images of the batch are fitted at once (independent problems summed into one loss). Only
the vertices under the landmarks are posed during the optimisation, so a fit of hundreds of
images takes seconds on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from facetwin.errors import FacetwinError
from facetwin.geometry.camera import project_orthographic
from facetwin.geometry.rotation import axis_angle_to_matrix, head_yaw  # noqa: F401 (head_yaw re-exported)
from facetwin.geometry.skinning import linear_blend_skinning
from facetwin.headmodel.marching import contour_table, select_dynamic_contour

INNER = slice(17, 68)
CONTOUR = slice(0, 17)
REGIONS_68 = {
    "contour": list(range(0, 17)),
    "brows": list(range(17, 27)),
    "nose": list(range(27, 36)),
    "eyes": list(range(36, 48)),
    "mouth": list(range(48, 68)),
}


@dataclass
class FitResult:
    """Parameters of the fitted model, one row per image.

    shape (B, n_shape), expression (B, n_expr), pose (B, 5, 3) axis-angle, scale (B,) pixels per
    metre, translation2d (B, 2) pixels, landmarks2d (B, 68, 2) projected model landmarks (pixels),
    residuals (B, 68) pixel distances to the targets, contour_faces/bary (B, 17) / (B, 17, 3): the
    contour embedding used for each image (dynamic or static).
    """

    shape: torch.Tensor
    expression: torch.Tensor
    pose: torch.Tensor
    scale: torch.Tensor
    translation2d: torch.Tensor
    landmarks2d: torch.Tensor
    residuals: torch.Tensor
    contour_faces: torch.Tensor
    contour_bary: torch.Tensor

    def nme(self, targets: torch.Tensor, which: slice | list = INNER) -> torch.Tensor:
        """(B,) mean residual over ``which`` landmarks / outer-eye-corner distance of ``targets``."""
        return normalised_error(self.landmarks2d, targets, which)


def outer_eye_distance(landmarks2d: torch.Tensor) -> torch.Tensor:
    """(B,) distance between points 37 and 46 (1-based) of (B, 68, 2) landmarks."""
    return (landmarks2d[:, 36] - landmarks2d[:, 45]).norm(dim=-1)


def normalised_error(pred: torch.Tensor, target: torch.Tensor, which: slice | list = INNER) -> torch.Tensor:
    """(B,) mean point-to-point error over ``which`` landmarks, by outer-eye-corner distance."""
    err = (pred[:, which] - target[:, which]).norm(dim=-1).mean(-1)
    return err / outer_eye_distance(target)


class LandmarkSubsetModel:
    """Poses only the vertices that landmarks can lie on (a fast path for fitting).

    ``points(shape, expression, pose, faces, bary)`` gives (B, N, 3) posed points for per-image
    (B, N) triangle ids and (B, N, 3) barycentrics, all on the chosen vertex subset.
    """

    def __init__(self, model, triangles: torch.Tensor):
        faces = model.faces
        ids = torch.unique(faces[triangles.reshape(-1)].reshape(-1))
        V = model.v_template.shape[0]
        remap = torch.full((V,), -1, dtype=torch.long, device=faces.device)
        remap[ids] = torch.arange(ids.numel(), device=faces.device)
        self.model = model
        self.ids = ids
        self.remap = remap
        pick = lambda b: b.reshape(b.shape[0], V, 3)[:, ids].reshape(b.shape[0], -1)  # noqa: E731
        self.v_template = model.v_template[ids]
        self.shapedirs = pick(model.shapedirs)
        self.exprdirs = pick(model.exprdirs)
        self.posedirs = pick(model.posedirs) if getattr(model, "posedirs", None) is not None else None
        self.lbs_weights = model.lbs_weights[ids]

    def vertices(self, shape, expression, pose) -> torch.Tensor:
        dtype = shape.dtype
        B = shape.shape[0]
        rest = self.v_template.to(dtype) + (shape @ self.shapedirs.to(dtype) + expression @ self.exprdirs.to(dtype)).reshape(B, -1, 3)
        j = self.model.j_template.to(dtype) + (shape @ self.model.j_shapedirs.to(dtype)
                                               + expression @ self.model.j_exprdirs.to(dtype)).reshape(B, 5, 3)
        pd = self.posedirs.to(dtype) if self.posedirs is not None else None
        posed, _ = linear_blend_skinning(rest, j, pose, self.lbs_weights.to(dtype), self.model.parents, pd)
        return posed

    def points(self, shape, expression, pose, faces, bary) -> torch.Tensor:
        v = self.vertices(shape, expression, pose)                      # (B, k, 3)
        corners = self.remap[self.model.faces[faces]]                   # (B, N, 3)
        B, N = faces.shape
        gathered = torch.gather(v, 1, corners.reshape(B, N * 3, 1).expand(-1, -1, 3)).reshape(B, N, 3, 3)
        return (gathered * bary.to(v.dtype)[..., None]).sum(-2)


def contour_embedding(model, pose: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 17) triangles and (B, 17, 3) barycentrics of the contour landmarks for each pose."""
    B = pose.shape[0]
    static_f = model.landmark_faces[:17].expand(B, 17)
    static_b = model.landmark_bary[:17].expand(B, 17, 3)
    data = model.data
    if mode == "static" or data.dynamic_landmark_faces is None:
        return static_f, static_b
    faces, bary, yaws = contour_table(data, pose.dtype, pose.device)
    return select_dynamic_contour(head_yaw(pose.detach()), faces, bary, yaws)


def fit_landmarks(
    model,
    landmarks2d,
    image_size=None,
    weights=None,
    contour: str = "dynamic",
    n_shape: int | None = None,
    shape_prior: float = 3e-3,
    expression_prior: float = 1e-3,
    neck_prior: float = 1e-1,
    jaw_prior: float = 1e-2,
    iterations: int = 300,
    rigid_iterations: int = 100,
    yaw_starts_deg=(-50.0, -25.0, 0.0, 25.0, 50.0),
    lr: float = 0.03,
    landmark_faces=None,
    landmark_bary=None,
    dtype: torch.dtype = torch.float32,
) -> FitResult:
    """Fit identity β, expression ψ, global/neck/jaw pose and an orthographic camera.

    Args:
        model: a :class:`facetwin.headmodel.HeadModel`.
        landmarks2d: (B, 68, 2) target pixels (x right, y down; 0-based, i.e. .pts minus 1).
        image_size: (W, H) or None; only used to check the landmarks (not needed by the fit).
        weights: (68,) or (B, 68) landmark weights; default 1 everywhere (0 drops a point).
        contour: "dynamic" (FLAME-style contour marching by the current yaw), "static" (the
            zero-pose boundary landmarks 1-17) or "ignore" (contour weight 0).
        n_shape: number of identity components to fit (default all).
        *_prior: weights of the Gaussian priors (residuals are measured in outer-eye-corner
            distances, summed over landmarks): ||β||², ||ψ||², ||θ_neck||², ||θ_jaw||² (the
            jaw's non-opening axes count 100x).
        iterations / rigid_iterations: Adam steps of the full fit / of the rigid start, which
            tries every yaw in ``yaw_starts_deg`` and keeps the best.
        landmark_faces / landmark_bary: override the model's embedding ((68,), (68, 3)).
    Returns:
        :class:`FitResult` (tensors detached, in ``dtype``, on the model's device).
    """
    device = model.v_template.device
    target = torch.as_tensor(np.asarray(landmarks2d) if not torch.is_tensor(landmarks2d) else landmarks2d,
                             dtype=dtype, device=device)
    if target.ndim != 3 or target.shape[1:] != (68, 2):
        raise FacetwinError(f"landmarks2d must have shape (B, 68, 2), got {tuple(target.shape)}")
    if not torch.isfinite(target).all():
        raise FacetwinError("landmarks2d contains NaN or infinite values")
    if image_size is not None:
        W, H = image_size
        if (target[..., 0] < -W).any() or (target[..., 0] > 2 * W).any() or (target[..., 1] < -H).any() or (target[..., 1] > 2 * H).any():
            raise FacetwinError("landmarks2d lie far outside the image: are they in pixels of this image?")
    B = target.shape[0]
    n_shape = model.n_shape if n_shape is None else min(n_shape, model.n_shape)
    lm_f = model.landmark_faces if landmark_faces is None else torch.as_tensor(np.asarray(landmark_faces), device=device)
    lm_b = model.landmark_bary if landmark_bary is None else torch.as_tensor(np.asarray(landmark_bary), dtype=dtype, device=device)
    w = torch.ones(B, 68, dtype=dtype, device=device) if weights is None else \
        torch.as_tensor(np.asarray(weights), dtype=dtype, device=device).expand(B, 68).clone()
    if contour == "ignore":
        w[:, :17] = 0
    contour_mode = "static" if contour in ("static", "ignore") else "dynamic"

    # Every triangle a landmark may use: the embedding plus all dynamic contour triangles.
    tris = [lm_f.reshape(-1)]
    if contour_mode == "dynamic" and model.data.dynamic_landmark_faces is not None:
        tris.append(torch.as_tensor(np.asarray(model.data.dynamic_landmark_faces), device=device).reshape(-1))
    sub = LandmarkSubsetModel(model, torch.cat(tris))

    # Normalised image frame: centred on the targets, unit = outer-eye-corner distance.
    centre = target[:, 17:].mean(1)                                   # (B, 2)
    unit = outer_eye_distance(target).clamp_min(1e-6)                 # (B,)
    tgt = (target - centre[:, None]) / unit[:, None, None]

    def embedding(pose):
        if contour_mode == "dynamic":
            cf, cb = _dynamic(model, pose)
        else:
            cf, cb = lm_f[:17].expand(pose.shape[0], 17), lm_b[:17].expand(pose.shape[0], 17, 3)
        f = torch.cat([cf, lm_f[17:].expand(pose.shape[0], 51)], 1)
        b = torch.cat([cb.to(dtype), lm_b[17:].to(dtype).expand(pose.shape[0], 51, 3)], 1)
        return f, b

    zeros_shape = lambda n: torch.zeros(n, n_shape, dtype=dtype, device=device)  # noqa: E731
    zeros_expr = lambda n: torch.zeros(n, model.n_expr, dtype=dtype, device=device)  # noqa: E731

    def full_shape(beta):
        if n_shape == model.n_shape:
            return beta
        return torch.cat([beta, beta.new_zeros(beta.shape[0], model.n_shape - n_shape)], 1)

    def project(points, log_s, t):
        return project_orthographic(points, log_s.exp(), t)

    # 1. Rigid start from several yaws: global rotation, scale, translation.
    starts = torch.as_tensor(np.deg2rad(np.asarray(yaw_starts_deg, np.float64)), dtype=dtype, device=device)
    S = starts.numel()
    rep = lambda x: x.repeat_interleave(S, 0)  # noqa: E731
    pose = torch.zeros(B * S, 5, 3, dtype=dtype, device=device)
    pose[:, 0, 1] = starts.repeat(B)
    f0, b0 = embedding(pose)
    p0 = sub.points(full_shape(zeros_shape(B * S)), zeros_expr(B * S), pose, f0, b0)
    q = project(p0, torch.zeros(B * S, dtype=dtype, device=device), torch.zeros(B * S, 2, dtype=dtype, device=device))
    tg = rep(tgt)
    inner = slice(17, 68)
    qc, tc = q[:, inner] - q[:, inner].mean(1, keepdim=True), tg[:, inner] - tg[:, inner].mean(1, keepdim=True)
    s_init = ((qc * tc).sum((1, 2)) / (qc * qc).sum((1, 2)).clamp_min(1e-12)).clamp_min(1e-3)
    t_init = tg[:, inner].mean(1) - s_init[:, None] * q[:, inner].mean(1)
    glob = pose[:, 0].clone().requires_grad_(True)
    log_s = s_init.log().clone().requires_grad_(True)
    t = t_init.clone().requires_grad_(True)
    wr = rep(w)
    opt = torch.optim.Adam([glob, log_s, t], lr=lr)
    for _ in range(rigid_iterations):
        opt.zero_grad()
        p = torch.cat([glob[:, None], pose[:, 1:]], 1)
        f, b = embedding(p.detach())
        r = project(sub.points(full_shape(zeros_shape(B * S)), zeros_expr(B * S), p, f, b), log_s, t) - tg
        loss = ((r ** 2).sum(-1) * wr).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        per = ((r ** 2).sum(-1) * wr).sum(1).reshape(B, S)
        best = per.argmin(1) + torch.arange(B, device=device) * S
    pose = torch.zeros(B, 5, 3, dtype=dtype, device=device)
    pose[:, 0] = glob.detach()[best]
    log_s = log_s.detach()[best].clone()
    t = t.detach()[best].clone()

    # 2. Full fit: identity, expression, global/neck/jaw pose, camera.
    beta = zeros_shape(B).requires_grad_(True)
    psi = zeros_expr(B)
    lo, hi = model.expression_range if model.expression_range is not None else (-math.inf, math.inf)
    psi = psi.clamp(lo, hi).requires_grad_(True)
    glob = pose[:, 0].clone().requires_grad_(True)
    neck = pose[:, 1].clone().requires_grad_(True)
    jaw = pose[:, 2].clone().requires_grad_(True)
    log_s.requires_grad_(True)
    t.requires_grad_(True)
    jaw_w = torch.tensor([1.0, 100.0, 100.0], dtype=dtype, device=device)
    opt = torch.optim.Adam([beta, psi, glob, neck, jaw, log_s, t], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations, eta_min=lr * 0.05)
    zeros_eye = torch.zeros(B, 2, 3, dtype=dtype, device=device)
    for _ in range(iterations):
        opt.zero_grad()
        p = torch.cat([glob[:, None], neck[:, None], jaw[:, None], zeros_eye], 1)
        f, b = embedding(p.detach())
        r = project(sub.points(full_shape(beta), psi, p, f, b), log_s, t) - tgt
        loss = ((r ** 2).sum(-1) * w).sum()
        loss = loss + shape_prior * (beta ** 2).sum() + expression_prior * (psi ** 2).sum()
        loss = loss + neck_prior * (neck ** 2).sum() + jaw_prior * ((jaw ** 2) * jaw_w).sum()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            psi.clamp_(lo, hi)

    with torch.no_grad():
        p = torch.cat([glob[:, None], neck[:, None], jaw[:, None], zeros_eye], 1)
        f, b = embedding(p)
        pts = project(sub.points(full_shape(beta), psi, p, f, b), log_s, t)
        pix = pts * unit[:, None, None] + centre[:, None]
        scale = log_s.exp() * unit
        trans = t * unit[:, None] + centre
        res = (pix - target).norm(dim=-1)
    return FitResult(
        shape=full_shape(beta.detach()), expression=psi.detach(), pose=p.detach(), scale=scale.detach(),
        translation2d=trans.detach(), landmarks2d=pix.detach(), residuals=res.detach(),
        contour_faces=f[:, :17].detach(), contour_bary=b[:, :17].detach(),
    )


def _dynamic(model, pose):
    return contour_embedding(model, pose, "dynamic")
