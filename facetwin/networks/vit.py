"""A plain-torch Vision Transformer whose parameter names match timm / MAE weights files.

timm (and torchvision) do not import beside the CPU torch here, so the ViT is written out. Its
``state_dict`` keys are the ones of ``timm.models.vision_transformer.VisionTransformer`` and of
the official MAE encoder (``cls_token``, ``pos_embed``, ``patch_embed.proj.*``,
``blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2``, ``norm``), so
:func:`load_pretrained` takes an official MAE/timm file (a user's own download; nothing is
fetched) and interpolates the position embedding to another input size (e.g. 224 → 128).

Each block has an ``adapter`` slot (``None`` by default = identity, no parameters) for
person-specific transfer (:mod:`facetwin.networks.adapters`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facetwin.errors import FacetwinError

# (embed_dim, depth, heads) of the standard sizes.
VIT_SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, N, dim)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with an optional adapter after the feed-forward layer."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adapter: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        h = self.mlp(self.norm2(x))
        if self.adapter is not None:
            h = self.adapter(h)
        return x + h


class VisionTransformer(nn.Module):
    """ViT with a class token. ``forward`` returns the normalised class token (B, dim);
    ``forward_tokens`` all normalised tokens (B, 1 + N, dim)."""

    def __init__(self, image_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 192, depth: int = 12, num_heads: int = 3, mlp_ratio: float = 4.0):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.grid = image_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    @classmethod
    def from_size(cls, size: str, image_size: int = 128, patch_size: int = 16) -> "VisionTransformer":
        if size not in VIT_SIZES:
            raise FacetwinError(f"unknown ViT size '{size}' (choose {', '.join(VIT_SIZES)})")
        dim, depth, heads = VIT_SIZES[size]
        return cls(image_size, patch_size, 3, dim, depth, heads)

    def _init_weights(self) -> None:
        # MAE/timm: fixed 2-D sin-cos position embedding is a good start; truncated normal elsewhere.
        self.pos_embed.data.copy_(sincos_pos_embed(self.embed_dim, self.grid, cls_token=True)[None])
        nn.init.normal_(self.cls_token, std=0.02)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def transfer_parameters(self) -> list[nn.Parameter]:
        """What person-specific transfer trains: adapters (after ``add_adapters``) and layer norms."""
        from facetwin.networks.adapters import transfer_parameters

        return transfer_parameters(self)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → patch tokens with position embedding (B, N, dim), no class token."""
        return self.patch_embed(images) + self.pos_embed[:, 1:]

    def run_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def with_cls(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(patch_tokens.shape[0], -1, -1)
        return torch.cat([cls, patch_tokens], 1)

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, 1 + N, dim)."""
        return self.run_blocks(self.with_cls(self.embed(images)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W), ImageNet-normalised → class token (B, dim)."""
        return self.forward_tokens(images)[:, 0]


def sincos_pos_embed(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position embedding, (grid² [+1], dim)."""
    coords = torch.arange(grid, dtype=torch.float64)
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")

    def one_d(d: int, pos: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([out.sin(), out.cos()], 1)

    emb = torch.cat([one_d(dim // 2, gx), one_d(dim // 2, gy)], 1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], 0)
    return emb.float()


def interpolate_pos_embed(pos_embed: torch.Tensor, new_grid: int) -> torch.Tensor:
    """(1, 1 + g², dim) → (1, 1 + new_grid², dim), bicubic on the patch part (timm's rule)."""
    n_patch = pos_embed.shape[1] - 1
    old = int(round(math.sqrt(n_patch)))
    if old * old != n_patch:
        raise FacetwinError(f"position embedding with {n_patch} patches is not a square grid")
    if old == new_grid:
        return pos_embed
    cls, patch = pos_embed[:, :1], pos_embed[:, 1:]
    dim = patch.shape[-1]
    patch = patch.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    patch = patch.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, dim).to(pos_embed.dtype)
    return torch.cat([cls, patch], 1)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FacetwinError(f"ViT weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise FacetwinError(f"cannot read ViT weights {path.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    for key in ("model", "state_dict", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise FacetwinError(f"{path.name} does not hold a state dict")
    return obj


def adapt_state_dict(state: dict[str, torch.Tensor], vit: VisionTransformer, prefix: str = "") -> dict[str, torch.Tensor]:
    """Keep the encoder keys of an MAE/timm/facetwin state dict and fit them to ``vit``.

    Drops MAE's decoder (``decoder_*``, ``mask_token``) and classifier heads; strips a
    ``module.``/``encoder.``/``vit.`` prefix; interpolates ``pos_embed`` to ``vit``'s grid.
    """
    own = vit.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key
        for p in ("module.", prefix, "encoder.", "vit.", "backbone."):
            if p and k.startswith(p):
                k = k[len(p):]
        if k == "fc_norm.weight" and "norm.weight" not in state:  # timm global-pool fine-tunes
            k = "norm.weight"
        elif k == "fc_norm.bias" and "norm.bias" not in state:
            k = "norm.bias"
        if k not in own:
            continue
        if k == "pos_embed":
            value = interpolate_pos_embed(value, vit.grid)
        if value.shape != own[k].shape:
            raise FacetwinError(f"weights tensor {key} has shape {tuple(value.shape)}, the ViT expects {tuple(own[k].shape)} (wrong size?)")
        out[k] = value.to(own[k].dtype)
    return out


def load_pretrained(vit: VisionTransformer, path: str | Path, strict_blocks: bool = True) -> list[str]:
    """Load an official MAE/timm (or facetwin) ViT state dict into ``vit``; returns missing keys.

    Raises FacetwinError when nothing matches or shapes differ (a different ViT size).
    """
    state = adapt_state_dict(_read_state_dict(Path(path)), vit)
    if not state:
        raise FacetwinError(f"{Path(path).name} holds no ViT encoder weights")
    missing, _ = vit.load_state_dict(state, strict=False)
    missing = [k for k in missing if ".adapter." not in k]
    if strict_blocks and any(k.startswith("blocks.") for k in missing):
        raise FacetwinError(f"{Path(path).name} misses transformer blocks ({len(missing)} tensors): wrong ViT size?")
    return missing
