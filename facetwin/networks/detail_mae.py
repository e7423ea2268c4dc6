"""The detail MAE 𝒜 (section 3.3): D = 𝒜(I, T_UV, x_d).

A transformer over patches of the unwrapped image texture (with its visibility mask) and the
tension map T_UV, all in the detail UV layout, with **no masking** (the paper's zero masking
ratio: every patch is seen). A learnable patch-wise detail latent ``x_d`` (one vector per patch,
shared by all people) is added to the patch tokens; a linear head decodes each token into its
p × p patch of ``refine`` feature maps, and two 3 × 3 convolutions over the whole map — reading
those features and (``skip``) the input maps themselves at full resolution — turn them into the
displacement map, bounded like DECA's: ``D = 0.01 · tanh(·)`` metres. (A linear head straight to D,
``refine = 0``, decodes every patch on its own: after 600 steps its D still showed the 8-texel patch
grid as seams, docs/detail.md; the convolutions see across the patch borders, and the skip gives
them the texel-sharp shading the 8² patch embedding compresses.)

Built from the project's ViT :class:`~facetwin.networks.vit.Block` s in ``self.blocks`` (and the
ViT's ``norm`` naming), so :func:`facetwin.networks.adapters.add_adapters` puts the paper's
adapters into it; :meth:`DetailMAE.transfer_parameters` lists what person-specific transfer
trains (adapters, layer norms, x_d).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from facetwin.networks import adapters, onnx_runtime
from facetwin.networks.unet import MAX_DISPLACEMENT
from facetwin.networks.vit import Block, PatchEmbed, sincos_pos_embed


@dataclass
class DetailMAEConfig:
    map_size: int = 128           # S of the detail UV maps
    patch_size: int = 8
    embed_dim: int = 128          # 128 × 4 blocks: 2.4× faster than 192 × 6 at batch 1 (BENCHMARKS.md
    depth: int = 4                # "Detail inference"), the same 256 tokens of 8² texels
    num_heads: int = 2
    mlp_ratio: float = 4.0
    in_channels: int = 5          # RGB texture + visibility + T_UV
    max_displacement: float = MAX_DISPLACEMENT
    refine: int = 8               # feature maps per texel the tokens decode to; 0 = a linear head straight to D
    decoder_width: int = 16       # channels of the decoder's hidden 3 × 3 convolution
    skip: bool = True             # the decoder also reads the input maps (texture·visibility, visibility, T_UV)


class DetailMAE(nn.Module):
    """(B, 3, S, S) texture, (B, 1, S, S) visibility, (B, 1, S, S) T_UV → (B, 1, S, S) D (metres)."""

    def __init__(self, config: DetailMAEConfig | None = None):
        super().__init__()
        self.config = c = config or DetailMAEConfig()
        if c.map_size % c.patch_size:
            raise ValueError(f"map size {c.map_size} is not a multiple of the patch size {c.patch_size}")
        self.grid = c.map_size // c.patch_size
        self.patch_embed = PatchEmbed(c.patch_size, c.in_channels, c.embed_dim)
        self.register_buffer("pos_embed", sincos_pos_embed(c.embed_dim, self.grid, cls_token=False)[None], persistent=False)
        self.detail_latent = nn.Parameter(torch.zeros(1, self.grid ** 2, c.embed_dim))  # x_d
        self.blocks = nn.ModuleList([Block(c.embed_dim, c.num_heads, c.mlp_ratio) for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.head = nn.Linear(c.embed_dim, c.patch_size ** 2 * max(1, c.refine))
        if c.refine:
            n_in = c.refine + (c.in_channels if c.skip else 0)
            self.decoder = nn.Sequential(nn.Conv2d(n_in, c.decoder_width, 3, padding=1), nn.GELU(),
                                         nn.Conv2d(c.decoder_width, 1, 3, padding=1))
        nn.init.normal_(self.detail_latent, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.output_layer.weight)  # untrained: D = 0
        nn.init.zeros_(self.output_layer.bias)

    @property
    def output_layer(self) -> nn.Module:
        """The last layer (zero at initialisation, so an untrained MAE decodes D = 0)."""
        return self.decoder[-1] if self.config.refine else self.head

    @property
    def x_d(self) -> nn.Parameter:
        return self.detail_latent

    def inputs(self, texture: torch.Tensor, visibility: torch.Tensor, tension: torch.Tensor) -> torch.Tensor:
        """The (B, 5, S, S) input maps: texture·visibility, visibility, T_UV."""
        x = torch.cat([texture * visibility, visibility, tension], 1)
        if x.shape[-1] != self.config.map_size or x.shape[-2] != self.config.map_size:
            raise ValueError(f"detail maps must be {self.config.map_size}², got {tuple(x.shape[-2:])}")
        return x

    def tokens(self, texture: torch.Tensor, visibility: torch.Tensor, tension: torch.Tensor) -> torch.Tensor:
        """Encoded patch tokens (B, N, dim), N = (S / p)², row-major."""
        return self._encode(self.inputs(texture, visibility, tension))

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed(x) + self.pos_embed.to(x.dtype) + self.detail_latent
        for block in self.blocks:
            t = block(t)
        return self.norm(t)

    def forward(self, texture: torch.Tensor, visibility: torch.Tensor, tension: torch.Tensor) -> torch.Tensor:
        runtime = onnx_runtime.active(self)  # onnxruntime, inference only
        if runtime is not None:
            return runtime(texture, visibility, tension)
        c = self.config
        p, g, k = c.patch_size, self.grid, max(1, c.refine)
        x = self.inputs(texture, visibility, tension)
        out = self.head(self._encode(x))                                    # (B, N, p² k)
        B = out.shape[0]
        d = out.reshape(B, g, g, p, p, k).permute(0, 5, 1, 3, 2, 4).reshape(B, k, g * p, g * p)
        if c.refine:
            d = self.decoder(torch.cat([d, x], 1) if c.skip else d)
        return self.config.max_displacement * torch.tanh(d)

    def transfer_parameters(self) -> list[nn.Parameter]:
        """What person-specific transfer trains: the adapters (after ``add_adapters``), every layer
        norm and the detail latent x_d; the rest stays frozen."""
        return adapters.transfer_parameters(self)

    def latent_parameters(self) -> list[nn.Parameter]:
        """The learnable latents :func:`facetwin.networks.adapters.transfer_parameters` collects: x_d."""
        return [self.detail_latent]
