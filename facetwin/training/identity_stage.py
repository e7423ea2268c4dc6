"""The identity stage: train the identity head (:mod:`facetwin.networks.identity_head`) of a
coarse model whose encoder stays frozen.

``β = β_ViT + head(dlib descriptor of the photo)``, then the camera is re-fitted so the face
keeps its place (:meth:`facetwin.models.coarse.CoarseModel.with_identity`). The objective is
the coarse one, L_C of Eq. 2 with its one weights object (:class:`CoarseLossWeights`): only β
moves, so L_id (the render composited over the photo against the photo, through dlib's
descriptor), L_pho, the landmark terms and L_sc decide the identity. The model file it writes is
a complete coarse model file (encoder + identity head) that everything else loads as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from facetwin.errors import FacetwinError
from facetwin.models.coarse import export_encoder, load_albedo, load_coarse_model, resolve_model_file
from facetwin.networks.identity_head import IdentityHead, IdentityHeadConfig
from facetwin.training.coarse_stage import CoarseStage, CoarseTrainingSections
from facetwin.training.config import ConfigError
from facetwin.training.engine import Stage


@dataclass
class IdentityHeadTrainConfig:
    """The ``identity:`` section."""

    base: str = "default"          # coarse model file whose encoder is frozen (and whose head, if any, is continued)
    hidden: int = 256              # identity head width
    standardise_images: int = 512  # photos whose descriptors set the head's input standardisation (fresh head)

    def __post_init__(self):
        if self.hidden < 1 or self.standardise_images < 1:
            raise ConfigError("identity.hidden and identity.standardise_images must be >= 1")


@dataclass
class IdentityConfig(CoarseTrainingSections):
    """``facetwin train identity`` (configs/identity.yaml)."""

    identity: IdentityHeadTrainConfig = field(default_factory=IdentityHeadTrainConfig)


class IdentityStage(CoarseStage):
    name = "identity"
    config_class = IdentityConfig
    default_config = "identity"
    help = "train the identity head (dlib descriptor → β) of a coarse model, its encoder frozen"

    def setup(self, info) -> None:
        cfg = self.cfg
        dev = info.device
        base = resolve_model_file(cfg.identity.base)
        self.coarse, self.base_meta = load_coarse_model(base, device=dev)
        self.base_path = base
        self.init_steps = int(self.base_meta.get("total_steps", self.base_meta.get("step", 0)))
        encoder = self.coarse.encoder
        encoder.requires_grad_(False).eval()
        self.coarse.albedo_model = load_albedo(cfg.render.albedo).to(dev)
        if self._dataset is None:
            from facetwin.data.prepared import open_prepared

            self._dataset = open_prepared(cfg.data, quiet=not info.is_main)
        self.dataset = self._dataset
        head = self.coarse.identity_head
        if head is None:
            head = IdentityHead(IdentityHeadConfig(n_shape=encoder.layout.n_shape, hidden=cfg.identity.hidden)).to(dev)
            head.set_standardisation(self._descriptors(min(cfg.identity.standardise_images, len(self.dataset))))
            self.coarse.identity_head = head
        head.requires_grad_(True)
        self.model = head
        self.coarse.render_size = cfg.render.size or cfg.data.crop_size
        if cfg.render.enabled and not self.coarse.attach_renderer(self.coarse.render_size):
            raise FacetwinError(f"head model '{self.coarse.head_model.name}' has no UV layout for the albedo model")
        self._check_terms(dev)

    @torch.no_grad()
    def _descriptors(self, n: int, batch_size: int = 16) -> torch.Tensor:
        """dlib descriptors (n, 128) of the first ``n`` training crops (fixed: the same on every process)."""
        from facetwin.training.engine import SeededDataset

        seeded = SeededDataset(self.dataset)  # augmentation under a fixed seed per crop: reproducible runs
        out = []
        for s in range(0, n, batch_size):
            images = torch.stack([seeded[(i, i)]["image"] for i in range(s, min(n, s + batch_size))]).float()
            images = images.to(self.coarse.edges.device)
            out.append(self.coarse.identity_descriptor(self._encode(images), images)[0])
        return torch.cat(out)

    def _encode(self, images: torch.Tensor):
        with torch.no_grad(), self.autocast():
            params = self.coarse.encoder(self.coarse.encoder_input(images))
        return params.to(torch.float32).detach()

    def parameter_groups(self, model, optim):
        return Stage.parameter_groups(self, model, optim)

    def forward(self, model, batch, with_render: bool = True):
        """(CoarseLossInputs, geometry): the frozen encoder, the identity head (``model``, maybe
        DDP-wrapped) on the photo's descriptor, the camera re-fit, then the coarse loss inputs."""
        images = batch["image"].float()
        params = self._encode(images)
        desc, l2d = self.coarse.identity_descriptor(params, images)
        params = self.coarse.with_identity(params, model(desc), l2d, images.shape[-1])
        return self.coarse.loss_inputs(params, batch, self.weights, with_render=with_render)

    def step_logs(self, geo) -> dict[str, float]:
        return {"beta_norm": float(geo.params.shape.detach().norm(dim=-1).mean())}

    def export(self, model, out_dir, step, config):
        head = model.module if hasattr(model, "module") else model
        extra = {"identity_stage": {"base_model": self.base_path.name, "train_config": config or {}}}
        # the encoder's own training config stays `train_config` (person-specific transfer reuses its losses)
        return export_encoder(self.coarse.encoder, Path(out_dir) / self.model_file, self.coarse.head_model.name,
                              contour=self.base_meta["inference"]["contour"], step=step,
                              config=self.base_meta.get("train_config") or {}, command=(config or {}).get("command", ""),
                              init_steps=self.init_steps, identity_head=head, extra=extra)
