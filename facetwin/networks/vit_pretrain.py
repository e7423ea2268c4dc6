"""``vit-pretrain``: masked-autoencoder pre-training of the ViT encoder on face crops (He et al.)
— the paper's "ViT-MAE" prior for the coarse encoder. (In facetwin, "MAE" names the paper's
detail network; this module is the encoder's pre-training only.)

The encoder is :class:`facetwin.networks.vit.VisionTransformer` (timm/MAE names, so the
pre-trained weights load with ``model.pretrained`` in a coarse config); the decoder is a small
transformer that sees the visible tokens plus mask tokens and predicts the per-patch normalised
pixels of the masked patches (MAE's ``norm_pix_loss``).
"""

from __future__ import annotations

import torch
from torch import nn

from facetwin.networks.coarse_encoder import IMAGENET_MEAN, IMAGENET_STD
from facetwin.networks.vit import Block, VisionTransformer, sincos_pos_embed


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """(B, 3, H, W) → (B, N, p²·3), patches row-major, pixels (row, col, channel) like MAE."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(patches: torch.Tensor, p: int, grid: int) -> torch.Tensor:
    B = patches.shape[0]
    x = patches.reshape(B, grid, grid, p, p, 3).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, 3, grid * p, grid * p)


class VitPretrainer(nn.Module):
    """ViT encoder + a small masked-patch decoder (the pre-training network)."""

    def __init__(self, encoder: VisionTransformer, decoder_dim: int = 128, decoder_depth: int = 2,
                 decoder_heads: int = 4, mask_ratio: float = 0.75):
        super().__init__()
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        n = encoder.grid ** 2
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("decoder_pos_embed", sincos_pos_embed(decoder_dim, encoder.grid, cls_token=True)[None], persistent=False)
        self.decoder_blocks = nn.ModuleList([Block(decoder_dim, decoder_heads) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, encoder.patch_size ** 2 * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.n_patches = n

    def latent_parameters(self) -> list[nn.Parameter]:
        """Learnable tokens that are neither weights of a layer nor layer norms (the mask token)."""
        return [self.mask_token]

    def transfer_parameters(self) -> list[nn.Parameter]:
        """What person-specific transfer would train: adapters, layer norms, the mask token."""
        from facetwin.networks.adapters import transfer_parameters

        return transfer_parameters(self)

    def random_masking(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep a random (1 - ratio) subset per image: (kept (B, K, D), mask (B, N) 1 = removed, restore idx)."""
        B, N, D = tokens.shape
        keep = max(1, int(round(N * (1 - self.mask_ratio))))
        noise = torch.rand(B, N, device=tokens.device)
        shuffle = noise.argsort(1)
        restore = shuffle.argsort(1)
        kept = torch.gather(tokens, 1, shuffle[:, :keep, None].expand(-1, -1, D))
        mask = torch.ones(B, N, device=tokens.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, restore)
        return kept, mask, restore

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) in [0, 1] → (loss, prediction (B, N, p²3), mask (B, N))."""
        enc = self.encoder
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        kept, mask, restore = self.random_masking(enc.embed(x))
        latent = enc.run_blocks(enc.with_cls(kept))
        y = self.decoder_embed(latent)
        B, K1, D = y.shape
        masks = self.mask_token.expand(B, self.n_patches + 1 - K1, -1).to(y.dtype)
        seq = torch.cat([y[:, 1:], masks], 1)
        seq = torch.gather(seq, 1, restore[..., None].expand(-1, -1, D))
        seq = torch.cat([y[:, :1], seq], 1) + self.decoder_pos_embed.to(y.dtype)
        for blk in self.decoder_blocks:
            seq = blk(seq)
        pred = self.decoder_pred(self.decoder_norm(seq))[:, 1:]
        target = patchify(images, enc.patch_size).to(pred.dtype)
        mu, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mu) / (var + 1e-6).sqrt()
        per_patch = ((pred.float() - target.float()) ** 2).mean(-1)
        loss = (per_patch * mask).sum() / mask.sum().clamp_min(1)
        return loss, pred, mask
