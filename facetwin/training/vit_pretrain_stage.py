"""MAE pre-training of the coarse encoder's ViT on face crops, as an engine stage.

Exports the encoder alone (timm/MAE names, fp16 safetensors) to
``<out>/export/vit_mae.safetensors``; start a coarse training from it with
``--set model.pretrained=<out>/export/vit_mae.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facetwin.networks.mae import MaskedAutoencoder, unpatchify
from facetwin.networks.vit import VisionTransformer
from facetwin.training import checkpoint as ckpt
from facetwin.training.config import CoarseDataConfig, OptimConfig, RunConfig
from facetwin.training.engine import Stage


@dataclass
class MaeModelConfig:
    size: str = "tiny"
    image_size: int = 128
    mask_ratio: float = 0.75
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4


@dataclass
class MaeConfig:
    model: MaeModelConfig = field(default_factory=MaeModelConfig)
    data: CoarseDataConfig = field(default_factory=CoarseDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1.5e-4 * 4, weight_decay=0.05, betas=(0.9, 0.95)))
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/mae", steps=5000, batch_size=64))


class MaeStage(Stage):
    name = "mae"

    def __init__(self, cfg: MaeConfig, dataset=None):
        self.cfg = cfg
        self._dataset = dataset

    def setup(self, info) -> None:
        m = self.cfg.model
        vit = VisionTransformer.from_size(m.size, m.image_size)
        self.model = MaskedAutoencoder(vit, m.decoder_dim, m.decoder_depth, m.decoder_heads, m.mask_ratio).to(info.device)
        if self._dataset is None:
            from facetwin.training.coarse_data import ManifestCrops

            d = self.cfg.data
            self._dataset = ManifestCrops(d.root, m.image_size, augment=d.augment, quiet=not info.is_main)
        self.dataset = self._dataset

    def training_step(self, model, batch, step):
        with self.autocast():
            loss, _, _ = model(batch["image"].float())
        return loss.float(), {}

    def visuals(self, model, batch, n: int = 6):
        from facetwin.training.visuals import to_uint8

        images = batch["image"][:n].float()
        _, pred, mask = model(images)
        p, g = model.encoder.patch_size, model.encoder.grid
        # Undo the per-patch normalisation with the true patch statistics (for display only).
        from facetwin.networks.mae import patchify

        t = patchify(images, p)
        mu, sd = t.mean(-1, keepdim=True), (t.var(-1, keepdim=True) + 1e-6).sqrt()
        recon = unpatchify(pred.float() * sd + mu, p, g).clamp(0, 1)
        m = unpatchify(mask[..., None].expand(-1, -1, p * p * 3), p, g)
        masked = images * (1 - m)
        mixed = images * (1 - m) + recon * m
        rows = [np.concatenate([to_uint8(a), to_uint8(b), to_uint8(c)], 1) for a, b, c in zip(images, masked, mixed)]
        return np.concatenate(rows, 0)

    def export(self, model, out_dir, step, config):
        meta = {"format": "facetwin-vit/1", "size": self.cfg.model.size, "image_size": self.cfg.model.image_size,
                "step": step, "train_config": config, "source": "MAE pre-training on face crops"}
        return ckpt.export_safetensors(model.encoder.state_dict(), meta, Path(out_dir) / "vit_mae.safetensors")
