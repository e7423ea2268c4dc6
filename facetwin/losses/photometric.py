"""L_pho: the masked photometric loss between the shaded render and the image."""

from __future__ import annotations

import torch


def photometric_mask(
    render_mask: torch.Tensor,
    skin_mask: torch.Tensor | None = None,
    occluder_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """skin ∧ rendered ∧ ¬occluder as a (B, 1, H, W) float mask (soft masks multiply).

    The mask is detached: with the area normalisation a differentiable mask would let the
    optimiser shrink the face onto the pixels it already explains.
    """
    m = render_mask.detach().float() if not render_mask.is_floating_point() else render_mask.detach()
    if skin_mask is not None:
        m = m * skin_mask.detach().to(m.dtype)
    if occluder_mask is not None:
        m = m * (1 - occluder_mask.detach().to(m.dtype))
    return m


def photometric_loss(
    render: torch.Tensor,
    image: torch.Tensor,
    mask: torch.Tensor,
    norm: str = "l1",
) -> torch.Tensor:
    """Masked photometric error, normalised by the mask area of each image.

    Args:
        render: (B, 3, H, W) shaded render in [0, 1].
        image: (B, 3, H, W) target image in [0, 1].
        mask: (B, 1, H, W) weights in [0, 1] (see :func:`photometric_mask`).
        norm: "l1" — mean absolute error over the channels per pixel (DECA);
              "l21" — Euclidean norm of the RGB difference per pixel (Deep3DFaceRecon).
    Returns:
        scalar: mean over images with a non-empty mask of sum(mask · e) / sum(mask); 0 if no
        image has a mask.
    """
    diff = render - image.to(render.dtype)
    if norm == "l1":
        err = diff.abs().mean(1, keepdim=True)
    elif norm == "l21":
        err = (diff * diff).sum(1, keepdim=True).clamp_min(1e-12).sqrt()
    else:
        raise ValueError(f"unknown photometric norm '{norm}' (use 'l1' or 'l21')")
    mask = mask.to(render.dtype)
    area = mask.sum((1, 2, 3))
    per_image = (err * mask).sum((1, 2, 3)) / area.clamp_min(1e-6)
    valid = (area > 0).to(render.dtype)
    return (per_image * valid).sum() / valid.sum().clamp_min(1)
