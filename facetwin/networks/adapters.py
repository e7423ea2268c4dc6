"""Lightweight residual adapters (Houlsby et al.) for person-specific transfer.

The paper inserts them inside each transformer block *after the feed-forward layer, before
layer normalisation*; in a pre-norm ViT block that is on the feed-forward output, before it is
added to the residual stream (which the next block's layer norm then reads)::

    h = mlp(norm2(x));  h = h + adapter(h);  x = x + h

``up`` starts at zero, so a freshly inserted adapter is exactly the identity and a base
checkpoint gives the same outputs with or without adapters.
"""

from __future__ import annotations

import torch
from torch import nn


class Adapter(nn.Module):
    """Bottleneck ``h + up(gelu(down(h)))`` on (B, N, dim) tokens; identity at initialisation."""

    def __init__(self, dim: int, bottleneck: int = 32):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.normal_(self.down.weight, std=dim ** -0.5)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


def add_adapters(vit: nn.Module, bottleneck: int = 32) -> list[nn.Parameter]:
    """Put a fresh :class:`Adapter` into every block of a :class:`facetwin.networks.vit.VisionTransformer`.

    Returns the new parameters (the ones person-specific transfer trains, with the layer norms).
    """
    params: list[nn.Parameter] = []
    for block in vit.blocks:
        ref = block.mlp.fc2.weight
        block.adapter = Adapter(ref.shape[0], bottleneck).to(device=ref.device, dtype=ref.dtype)
        params.extend(block.adapter.parameters())
    return params


def remove_adapters(vit: nn.Module) -> None:
    for block in vit.blocks:
        block.adapter = None


def adapter_and_norm_parameters(vit: nn.Module) -> list[nn.Parameter]:
    """Parameters that person-specific transfer trains: adapters and every layer norm."""
    params = []
    for name, p in vit.named_parameters():
        parts = name.split(".")
        if ".adapter." in name or (len(parts) >= 2 and parts[-2].startswith("norm")):
            params.append(p)
    return params
