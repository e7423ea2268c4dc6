"""Lightweight residual adapters (Houlsby et al.) for person-specific transfer, for any transformer.

The paper inserts them inside each transformer block *after the feed-forward layer, before
layer normalisation*; in a pre-norm block that is on the feed-forward output, before it is
added to the residual stream (which the next block's layer norm then reads)::

    h = mlp(norm2(x));  h = h + adapter(h);  x = x + h

``up`` starts at zero, so a freshly inserted adapter is exactly the identity and a base model
file gives the same outputs with or without adapters.

:func:`add_adapters` walks any module (an encoder, an encoder-decoder such as the vit-pretrain
network or the detail MAE) and fills the ``adapter`` slot of every transformer block
(:class:`facetwin.networks.vit.Block`) it finds. :func:`transfer_parameters` is what transfer
trains: the adapters, every layer norm, and the learnable latents a network declares with
``latent_parameters()``; each network exposes it as its ``transfer_parameters()`` method.
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


def transformer_blocks(module: nn.Module) -> list[nn.Module]:
    """Every transformer block inside ``module`` (blocks with an ``adapter`` slot, as
    :class:`facetwin.networks.vit.Block`'s: found by the slot, so this module needs no import of
    the ViT that imports it), in order."""
    return [m for m in module.modules() if hasattr(m, "adapter") and hasattr(m, "mlp") and not isinstance(m, Adapter)]


def add_adapters(module: nn.Module, bottleneck: int = 32) -> list[nn.Parameter]:
    """Put a fresh :class:`Adapter` into every transformer block of ``module`` (encoder and
    decoder alike). Returns the new parameters."""
    blocks = transformer_blocks(module)
    if not blocks:
        raise ValueError(f"{type(module).__name__} has no transformer blocks to put adapters in")
    params: list[nn.Parameter] = []
    for block in blocks:
        ref = block.mlp.fc2.weight
        block.adapter = Adapter(ref.shape[0], bottleneck).to(device=ref.device, dtype=ref.dtype)
        params.extend(block.adapter.parameters())
    return params


def remove_adapters(module: nn.Module) -> None:
    for block in transformer_blocks(module):
        block.adapter = None


def transfer_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Parameters person-specific transfer trains: adapters, every layer norm (found by type, not
    by name) and the module's learnable latents (``latent_parameters()`` of it and its children).
    Each parameter once, in module order."""
    found: list[nn.Parameter] = []
    seen: set[int] = set()

    def take(params):
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                found.append(p)

    for m in module.modules():
        if isinstance(m, (Adapter, nn.LayerNorm)):
            take(m.parameters())
        latent = getattr(m, "latent_parameters", None)
        if callable(latent):
            take(latent())
    return found
