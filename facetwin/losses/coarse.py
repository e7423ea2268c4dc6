"""The coarse-stage objective L_C (the paper's Eq. 2) in one call, with every weight in one place.

    L_C = L_sil + L_inL + L_spL + L_pho + L_per + L_reg + L_sc

Each term is its own pure function in this package; this module only maps the model outputs
and the data batch (:class:`CoarseLossInputs`) through them with :class:`CoarseLossWeights`.
``contour_mode="marching"`` swaps Eq. 1 for the paper's "w/o L_sil" ablation (FLAME-style
dynamic contour landmarks with DECA's landmark loss).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from facetwin.losses.consistency import shape_consistency_loss, shape_spread_loss
from facetwin.losses.landmarks import CONTOUR, inner_landmark_loss, landmark_pair_loss
from facetwin.losses.marching import marching_contour_loss
from facetwin.losses.perceptual import composite_render
from facetwin.losses.photometric import photometric_loss, photometric_mask
from facetwin.losses.regularizers import l2_regularizer, light_regularizer
from facetwin.losses.silhouette import silhouette_loss

Tensor = torch.Tensor


@dataclass(kw_only=True)
class CoarseLossInputs:
    """Everything the coarse losses read (keyword-only). Coordinates: crop pixels (origin at the
    top-left pixel corner)."""

    # --- predictions (from the model forward) ---
    landmarks2d: Tensor          # (B, 68, 2) projected model landmarks
    landmarks_normal_z: Tensor   # (B, 68) z of the posed unit normal at each landmark (> 0 faces camera)
    vertices2d: Tensor           # (B, V, 2) projected vertices
    silhouette: Tensor           # (B, V) bool: silhouette vertices ∧ candidate region
    shape: Tensor                # (B, n_shape) β
    expression: Tensor           # (B, n_expr) ψ (in the head model's range)
    albedo: Tensor               # (B, n_albedo) α
    light: Tensor                # (B, 9, 3) SH lighting
    image: Tensor                # (B, 3, H, W) in [0, 1]
    gt_landmarks: Tensor         # (B, 68, 2)
    render: Tensor | None = None          # (B, 3, H, W) shaded render in [0, 1]; None: photometric off
    render_mask: Tensor | None = None     # (B, 1, H, W) rendered face-skin coverage
    swapped_landmarks2d: Tensor | None = None  # (B, 68, 2) landmarks of the β-swapped forward
    swapped_render: Tensor | None = None       # (B, 3, H, W) render of the β-swapped forward (optional)
    dynamic_contour2d: Tensor | None = None    # (B, 17, 2) marched contour points (ablation only)
    pose: Tensor | None = None                 # (B, 5, 3)
    skin_mask: Tensor | None = None            # (B, 1, H, W) in {0, 1}
    occluder_mask: Tensor | None = None        # (B, 1, H, W) 1 where an occluder was pasted
    landmark_weight: Tensor | None = None      # (B, 68) per-landmark confidence (automatic labels)
    perceptual_mask: Tensor | None = None      # (B, 1, H, W) part of the render pasted for L_per (default render_mask)
    identity: Tensor | None = None             # (B,) int person labels (-1 unknown), for shape_spread
    # (B, n_shape) the β the shape prior acts on when part of ``shape`` is a fixed offset the run
    # does not train (a frozen identity head's): the trained network's own β; None = ``shape``
    prior_shape: Tensor | None = None

    @property
    def crop_size(self) -> int:
        """Side of the (square) crop in pixels; landmark distances are divided by it."""
        return max(int(self.image.shape[-1]), int(self.image.shape[-2]))


@dataclass
class CoarseLossWeights:
    """Every weight of Eq. 2. Landmark terms are L1 per point / crop size (a 1 % of the crop
    error per coordinate ≈ 0.02), the photometric term a mean absolute RGB error in [0, 1],
    the perceptual terms cosine distances in [0, 2], the regularisers squared norms per image.
    Defaults: DECA's balance translated to these units (DECA's landmark units are half a crop,
    hence the factor 2 on its landmark weights), for training from scratch."""

    silhouette: float = 2.0          # L_sil (or the marched contour term in "marching" mode)
    inner_landmarks: float = 2.0     # L_inL, points 18–68
    landmark_pairs: float = 2.0      # L_spL, eyelid and lip openings
    photometric: float = 2.0         # L_pho
    identity: float = 0.2            # L_id (needs an identity_loss callable)
    emotion: float = 0.0             # L_emo (needs an emotion_loss callable; off: no open weights)
    lip_reading: float = 0.0         # L_lr (needs a lip_reading_loss callable; off: no open weights)
    shape_reg: float = 1e-3          # |β|² (DECA: 1e-4 × Σ over a batch of ~32 / 2 ≈ 1.6e-3 per image)
    expression_reg: float = 1e-3     # |ψ|²
    albedo_reg: float = 1e-3         # |α|²
    light_reg: float = 1.0           # white-light prior on the SH coefficients
    shape_consistency: float = 2.0   # L_sc, landmark loss of the β-swapped forward
    shape_consistency_photometric: float = 0.0  # photometric share of L_sc when a swapped render is given
    shape_spread: float = 0.0        # ‖β − its person's mean β in the batch‖² (identity batches; 0 = off, as shipped)
    perceptual_region: str = "head"  # render pasted over the photo for L_per / L_id: "head" (all of it, as shipped) | "face" (no scalp/ears/neck)
    contour_mode: str = "silhouette"  # "silhouette" (Eq. 1) | "marching" (the w/o L_sil ablation)
    silhouette_outline: bool = False  # Eq. 1's Ṽ_e without folds hidden behind nearer surface (z-buffer)
    deca_landmark_weighting: bool = False  # DECA's per-point emphasis on the landmark terms
    photometric_norm: str = "l1"     # "l1" | "l21"

    def __post_init__(self):
        """Checked when a config is loaded: a wrong value must stop the run before it starts."""
        import math

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("float", float) and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"loss.{f.name} must be a finite weight >= 0, got {v!r}")
        if self.contour_mode not in ("silhouette", "marching"):
            raise ValueError(f"loss.contour_mode must be 'silhouette' or 'marching', not {self.contour_mode!r}")
        if self.photometric_norm not in ("l1", "l21"):
            raise ValueError(f"loss.photometric_norm must be 'l1' or 'l21', not {self.photometric_norm!r}")
        if self.perceptual_region not in ("head", "face"):
            raise ValueError(f"loss.perceptual_region must be 'head' or 'face', not {self.perceptual_region!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "CoarseLossWeights":
        """Build from a config mapping; unknown keys are an error (typos must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown coarse loss weight(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def coarse_losses(
    inputs: CoarseLossInputs,
    weights: CoarseLossWeights | None = None,
    identity_loss: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
    emotion_loss: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
    lip_reading_loss: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """L_C of Eq. 2.

    Perceptual callables take ``(composite, image, gt_landmarks)`` (see :mod:`facetwin.losses.perceptual`); a
    perceptual term is computed when its weight is > 0, its callable is given and a render is
    present. The photometric term needs ``render``; L_sc needs ``swapped_landmarks2d``; the
    "marching" mode needs ``dynamic_contour2d``.

    Returns:
        total (scalar) and a dict of the *weighted* terms (each a detached-able scalar) for logging.
    """
    w = weights or CoarseLossWeights()
    x = inputs
    crop = x.crop_size
    lw = x.landmark_weight
    contour = list(CONTOUR)
    terms: dict[str, Tensor] = {}

    if w.contour_mode == "silhouette":
        terms["silhouette"] = w.silhouette * silhouette_loss(
            x.landmarks2d[:, contour], x.landmarks_normal_z[:, contour], x.vertices2d, x.silhouette,
            x.gt_landmarks[:, contour], crop, None if lw is None else lw[:, contour],
        )
    else:
        if x.dynamic_contour2d is None:
            raise ValueError("contour_mode='marching' needs inputs.dynamic_contour2d")
        terms["marching_contour"] = w.silhouette * marching_contour_loss(
            x.dynamic_contour2d, x.gt_landmarks, crop, lw, deca_weighting=True
        )
    deca = w.deca_landmark_weighting or w.contour_mode == "marching"
    terms["inner_landmarks"] = w.inner_landmarks * inner_landmark_loss(
        x.landmarks2d, x.gt_landmarks, crop, lw, deca_weighting=deca
    )
    terms["landmark_pairs"] = w.landmark_pairs * landmark_pair_loss(x.landmarks2d, x.gt_landmarks, crop, landmark_weight=lw)

    mask = None
    if x.render is not None:
        render_mask = x.render_mask if x.render_mask is not None else torch.ones_like(x.render[:, :1])
        mask = photometric_mask(render_mask, x.skin_mask, x.occluder_mask)
        if w.photometric > 0:
            terms["photometric"] = w.photometric * photometric_loss(x.render, x.image, mask, w.photometric_norm)
        composite = None
        for name, weight, fn in (
            ("identity", w.identity, identity_loss),
            ("emotion", w.emotion, emotion_loss),
            ("lip_reading", w.lip_reading, lip_reading_loss),
        ):
            if weight > 0 and fn is not None:
                if composite is None:
                    paste = x.perceptual_mask if x.perceptual_mask is not None else render_mask
                    composite = composite_render(x.render, x.image, paste)
                terms[name] = weight * fn(composite, x.image, x.gt_landmarks)

    terms["shape_reg"] = w.shape_reg * l2_regularizer(x.shape if x.prior_shape is None else x.prior_shape)
    terms["expression_reg"] = w.expression_reg * l2_regularizer(x.expression)
    terms["albedo_reg"] = w.albedo_reg * l2_regularizer(x.albedo)
    if w.light_reg > 0:
        terms["light_reg"] = w.light_reg * light_regularizer(x.light)

    if x.swapped_landmarks2d is not None and w.shape_consistency > 0:
        terms["shape_consistency"] = w.shape_consistency * shape_consistency_loss(
            x.swapped_landmarks2d, x.gt_landmarks, crop, lw,
            swapped_render=x.swapped_render, image=x.image, photometric_mask=mask,
            photometric_weight=w.shape_consistency_photometric,
        )

    if w.shape_spread > 0 and x.identity is not None:
        terms["shape_spread"] = w.shape_spread * shape_spread_loss(x.shape, x.identity)

    total = torch.stack([t.to(x.landmarks2d.dtype) for t in terms.values()]).sum()
    return total, terms
