"""L_per = L_id + L_emo + L_lr: perceptual losses through frozen recognition networks.

All three are *pluggable*: the caller passes a callable, so the loss code has no network weights
of its own. A perceptual loss callable has the signature

    loss(composite (B, 3, H, W), image (B, 3, H, W), landmarks (B, 68, 2)) -> scalar

where ``composite`` is the render pasted over the image (:func:`composite_render`), both in
[0, 1], and ``landmarks`` are the labels in crop pixels (for networks that need aligned crops).
:class:`EmbeddingDistanceLoss` turns any embedding network ``(B, 3, h, w) -> (B, D)`` into such a
callable (cosine distance), with an optional alignment step; for the identity loss (DECA's L_id)
:func:`facetwin.losses.identity.dlib_identity_loss` wraps the dlib ResNet face descriptor ported
to torch in ``facetwin.networks.face_recognition`` with dlib's own face-chip alignment.

Emotion (EMOCA's emotion network) and lip reading (the AV-HuBERT/LipNet-style lip reader) have
no openly redistributable weights here, so their weights default to 0; anyone with such a
network plugs it in the same way (``EmbeddingDistanceLoss(emotion_net)``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F


def composite_render(render: torch.Tensor, image: torch.Tensor, render_mask: torch.Tensor) -> torch.Tensor:
    """Render over image: ``mask · render + (1 - mask) · image``, (B, 3, H, W)."""
    m = render_mask.to(render.dtype)
    return m * render + (1 - m) * image.to(render.dtype)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, D), (B, D) → scalar mean of ``1 - cos(a, b)``."""
    return (1 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)).mean()


class EmbeddingDistanceLoss(nn.Module):
    """Cosine distance between the embeddings of the composite and of the image.

    The image branch is computed without gradient (it is a target); the embedder's parameters
    are frozen so the loss only trains the reconstruction.

    Args:
        embedder: module or callable ``(B, 3, h, w) in [0, 1] -> (B, D)``.
        align: optional ``(images (B, 3, H, W), landmarks (B, 68, 2)) -> (B, 3, h, w)`` applied to
            both inputs first (e.g. :func:`facetwin.losses.identity.face_chips`). For dlib's
            descriptor it defaults to dlib's face-chip alignment, which that network needs.
    """

    def __init__(self, embedder: Callable[[torch.Tensor], torch.Tensor], align: Callable | None = None):
        super().__init__()
        self.embedder = embedder
        if align is None and _is_dlib_descriptor(embedder):
            from facetwin.losses.identity import face_chips

            align = face_chips
        self.align = align
        if isinstance(embedder, nn.Module):
            embedder.eval()
            for p in embedder.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "EmbeddingDistanceLoss":
        super().train(mode)
        if isinstance(self.embedder, nn.Module):
            self.embedder.eval()  # frozen network: never batch-norm statistics updates
        return self

    def forward(self, composite: torch.Tensor, image: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        if self.align is not None:
            if landmarks is None:
                raise ValueError("this perceptual loss aligns faces and needs the landmarks")
            composite, image = self.align(composite, landmarks), self.align(image, landmarks)
        with torch.no_grad():
            target = self.embedder(image)
        return cosine_distance(self.embedder(composite), target.to(composite.dtype))


PerceptualLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _is_dlib_descriptor(embedder) -> bool:
    try:
        from facetwin.networks.face_recognition import DlibFaceDescriptor
    except ImportError:
        return False
    return isinstance(embedder, DlibFaceDescriptor)
