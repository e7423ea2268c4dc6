"""L_per = L_id + L_emo + L_lr: perceptual losses through frozen recognition networks.

All three are *pluggable*: the caller passes a callable, so the loss code has no network weights
of its own. A perceptual loss callable has the signature

    loss(composite (B, 3, H, W), image (B, 3, H, W)) -> scalar

where ``composite`` is the render pasted over the image (:func:`composite_render`), both in
[0, 1]. :class:`EmbeddingDistanceLoss` turns any embedding network ``(B, 3, H, W) -> (B, D)``
into such a callable (cosine distance), e.g. the dlib ResNet face descriptor ported to torch in
``facetwin.networks.face_recognition`` for the identity loss (DECA's L_id).

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
        embedder: module or callable ``(B, 3, H, W) in [0, 1] -> (B, D)``.
    """

    def __init__(self, embedder: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.embedder = embedder
        if isinstance(embedder, nn.Module):
            embedder.eval()
            for p in embedder.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "EmbeddingDistanceLoss":
        super().train(mode)
        if isinstance(self.embedder, nn.Module):
            self.embedder.eval()  # frozen network: never batch-norm statistics updates
        return self

    def forward(self, composite: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.embedder(image)
        return cosine_distance(self.embedder(composite), target.to(composite.dtype))


PerceptualLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
