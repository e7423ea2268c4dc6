"""The identity head: a face-recognition descriptor → a correction of the identity β.

The ViT of the coarse encoder follows pose, jaw and expression well but leaves β near the mean
head (issue #14: β tells people apart barely better than chance). A face-recognition descriptor
is made to tell people apart (dlib's: verification AUC ≈ 1.0 on the same photos), so the
identity is read from it, as MICA does with ArcFace: ``β = β_ViT + head(descriptor)``.

The head is a small MLP over the 128-d dlib descriptor (:mod:`facetwin.networks.face_recognition`)
of the input photo's face chip. Its last layer starts at zero, so a fresh head leaves the base
model's output unchanged. The descriptor is standardised with a fixed mean and scale (buffers
set from training photos, stored in the model file).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

DESCRIPTOR_DIM = 128  # dlib_face_recognition_resnet_model_v1


@dataclass
class IdentityHeadConfig:
    n_shape: int                 # β components it corrects (the encoder's n_shape)
    hidden: int = 256            # width of the two hidden layers
    descriptor_dim: int = DESCRIPTOR_DIM
    descriptor: str = "dlib-resnet-v1"  # the network whose descriptor it reads

    def __post_init__(self):
        if self.n_shape < 1 or self.hidden < 1 or self.descriptor_dim < 1:
            raise ValueError("identity head: n_shape, hidden and descriptor_dim must be >= 1")
        if self.descriptor != "dlib-resnet-v1":
            raise ValueError(f"identity head: unknown descriptor {self.descriptor!r} (known: dlib-resnet-v1)")


class IdentityHead(nn.Module):
    """(B, 128) descriptor → (B, n_shape) Δβ (prior-SD units of the head model's identity basis)."""

    def __init__(self, cfg: IdentityHeadConfig):
        super().__init__()
        self.cfg = cfg
        d, h = cfg.descriptor_dim, cfg.hidden
        self.register_buffer("descriptor_mean", torch.zeros(d))
        self.register_buffer("descriptor_scale", torch.ones(()))
        self.mlp = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, cfg.n_shape))
        nn.init.zeros_(self.mlp[-1].weight)  # a fresh head changes nothing
        nn.init.zeros_(self.mlp[-1].bias)

    @torch.no_grad()
    def set_standardisation(self, descriptors: torch.Tensor) -> None:
        """Centre on the mean of ``descriptors`` (N, D) and scale by their RMS distance to it."""
        mean = descriptors.mean(0)
        self.descriptor_mean.copy_(mean)
        self.descriptor_scale.copy_((descriptors - mean).pow(2).sum(-1).mean().sqrt().clamp_min(1e-6))

    def forward(self, descriptor: torch.Tensor) -> torch.Tensor:
        x = (descriptor.float() - self.descriptor_mean) / self.descriptor_scale * (self.cfg.descriptor_dim ** 0.5)
        return self.mlp(x)

    def config(self) -> dict:
        return asdict(self.cfg)


def build_identity_head(config: dict) -> IdentityHead:
    """The head a model file describes (its ``identity_head`` metadata)."""
    return IdentityHead(IdentityHeadConfig(**config))
