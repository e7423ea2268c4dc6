"""D_UNet, the detail teacher (section 3.3): unwrapped texture + visibility → displacement map.

A small CPU-sized UNet (Ronneberger et al.): ``levels`` resolutions, two 3×3 convolutions with
GroupNorm + SiLU per level, stride-2 downsampling, bilinear upsampling with skip connections
(which give it the precise localisation the paper uses it for). The output is DECA's range:
``D = max_displacement · tanh(·)`` metres along the normal; the last layer starts at zero, so an
untrained teacher predicts D = 0 (the coarse surface).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facetwin.networks import onnx_runtime

MAX_DISPLACEMENT = 0.01  # metres, DECA's ±0.01


@dataclass
class UNetConfig:
    in_channels: int = 4          # RGB texture in [0, 1] + visibility mask
    width: int = 16               # channels of the first level; doubles per level
    levels: int = 4               # resolutions (the map size must be divisible by 2**(levels-1))
    max_displacement: float = MAX_DISPLACEMENT


def _block(cin: int, cout: int) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
    )


class DetailUNet(nn.Module):
    """(B, 3, S, S) texture, (B, 1, S, S) visibility → (B, 1, S, S) displacement in metres."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = c = config or UNetConfig()
        widths = [c.width * 2 ** i for i in range(c.levels)]
        self.down = nn.ModuleList()
        cin = c.in_channels
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.pool = nn.ModuleList([nn.Conv2d(w, w, 3, stride=2, padding=1) for w in widths[:-1]])
        self.up = nn.ModuleList([_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(c.levels - 1))])
        self.head = nn.Conv2d(widths[0], 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, texture: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
        runtime = onnx_runtime.active(self)  # onnxruntime, inference only
        if runtime is not None:
            return runtime(texture, visibility)
        S = texture.shape[-1]
        if S % 2 ** (self.config.levels - 1):
            raise ValueError(f"UV map size {S} is not divisible by {2 ** (self.config.levels - 1)}")
        x = torch.cat([texture * visibility, visibility], 1)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.pool):
                skips.append(x)
                x = self.pool[i](x)
        for block in self.up:
            s = skips.pop()
            x = F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, s], 1))
        return self.config.max_displacement * torch.tanh(self.head(x))
