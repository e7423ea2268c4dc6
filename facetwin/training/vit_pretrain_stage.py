"""``vit-pretrain``: masked-autoencoder pre-training of the coarse encoder's ViT on face crops, as
an engine stage, with its config :class:`VitPretrainConfig`.

Writes the encoder alone (timm/MAE names, fp16) as the model file
``<out>/export/vit_pretrain.safetensors``; start a coarse training from it with
``--set model.pretrained=<out>/export/vit_pretrain.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetwin.data.prepared import PreparedDataConfig
from facetwin.models import files
from facetwin.networks.vit import VisionTransformer
from facetwin.networks.vit_pretrain import VitPretrainer, patchify, unpatchify
from facetwin.training.config import ConfigError, OptimConfig, RunConfig
from facetwin.training.engine import Stage


@dataclass
class VitPretrainModelConfig:
    size: str = "tiny"
    image_size: int = 128
    mask_ratio: float = 0.75
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4

    def __post_init__(self):
        if not 0 < self.mask_ratio < 1:
            raise ConfigError(f"model.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.image_size < 16 or self.image_size % 16:
            raise ConfigError(f"model.image_size must be a multiple of 16, got {self.image_size}")


@dataclass
class VitPretrainConfig:
    """``facetwin train vit-pretrain`` (configs/vit-pretrain.yaml)."""

    model: VitPretrainModelConfig = field(default_factory=VitPretrainModelConfig)
    data: PreparedDataConfig = field(default_factory=PreparedDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1.5e-4 * 4, weight_decay=0.05, betas=(0.9, 0.95)))
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/vit-pretrain", steps=5000, batch_size=64))


class VitPretrainStage(Stage):
    name = "vit-pretrain"
    config_class = VitPretrainConfig
    default_config = "vit-pretrain"
    help = "masked-autoencoder pre-training of the ViT encoder on face crops"
    model_file = "vit_pretrain.safetensors"

    def __init__(self, cfg: VitPretrainConfig, dataset=None):
        self.cfg = cfg
        self._dataset = dataset

    def setup(self, info) -> None:
        m = self.cfg.model
        vit = VisionTransformer.from_size(m.size, m.image_size)
        self.model = VitPretrainer(vit, m.decoder_dim, m.decoder_depth, m.decoder_heads, m.mask_ratio).to(info.device)
        if self._dataset is None:
            from facetwin.data.prepared import PreparedDataset

            d = self.cfg.data
            self._dataset = PreparedDataset(d.root, m.image_size, augment=d.augment, preload=d.preload,
                                            fill_border=d.fill_border, quiet=not info.is_main)
        self.dataset = self._dataset

    def training_step(self, model, batch, step):
        with self.autocast():
            loss, _, _ = model(batch["image"].float())
        return loss.float(), {}

    def visuals(self, model, batch, n: int = 6):
        """Rows of input · masked input · reconstruction (visible patches kept)."""
        from facetwin.rendering.visualize import to_uint8

        images = batch["image"][:n].float()
        _, pred, mask = model(images)
        net = getattr(model, "module", model)
        p, g = net.encoder.patch_size, net.encoder.grid
        # Undo the per-patch normalisation with the true patch statistics (for display only).
        t = patchify(images, p)
        mu, sd = t.mean(-1, keepdim=True), (t.var(-1, keepdim=True) + 1e-6).sqrt()
        recon = unpatchify(pred.float() * sd + mu, p, g).clamp(0, 1)
        m = unpatchify(mask[..., None].expand(-1, -1, p * p * 3), p, g)
        masked = images * (1 - m)
        mixed = images * (1 - m) + recon * m
        rows = [np.concatenate([to_uint8(a), to_uint8(b), to_uint8(c)], 1) for a, b, c in zip(images, masked, mixed)]
        return np.concatenate(rows, 0)

    def export(self, model, out_dir, step, config):
        meta = {"size": self.cfg.model.size, "image_size": self.cfg.model.image_size, "step": step,
                "train_config": config, "command": (config or {}).get("command", ""),
                "source": "vit-pretrain (masked-autoencoder pre-training on face crops)"}
        return files.write_model_file(Path(out_dir) / self.model_file, model.encoder.state_dict(), files.VIT, meta)

    @staticmethod
    def summary(summary: dict) -> dict:
        return {**Stage.summary(summary), "model_file": f"{summary['out_dir']}/export/{VitPretrainStage.model_file}"}
