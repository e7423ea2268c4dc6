"""Person-specific transfer, detail part (paper section 3.4) as a stage of the generic engine.

The base detail MAE 𝒜 is frozen; a Houlsby adapter goes into each of its transformer blocks and
only the adapters, its layer norms and the detail latent x_d train
(:meth:`facetwin.networks.detail_mae.DetailMAE.transfer_parameters`), with the teacher loss
L_Tchr (Eq. 5: L1 + SSIM of D against the frozen UNet teacher's D) alone, as the paper transfers
the detail stage. The coarse geometry is the person's (the coarse part trained first, its β
fixed) and frozen. Texels the person's frames never show get no gradient and keep the base
model's priors (the paper's point about occluded areas).

The forward pass, the loss inputs and the loss terms are the detail model's and the detail
stage's (:class:`~facetwin.training.detail_stage.DetailStage`); this stage adds the person's
frames (drawn with repeats for small sets), the wall-clock budget and the frozen base weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from facetwin.errors import FacetwinError
from facetwin.losses.detail import DetailLossWeights
from facetwin.models.detail import DetailModel, read_detail_network
from facetwin.models.person import detail_parameter_names
from facetwin.networks.adapters import add_adapters
from facetwin.training.detail_stage import DetailConfig, DetailStage

# L_Tchr only (Eq. 5); the other terms of L_animD are off in person transfer
TRANSFER_WEIGHTS = replace(DetailLossWeights(), photometric=0.0, mrf=0.0, smoothness=0.0, displacement_reg=0.0,
                           symmetry=0.0, consistency=0.0)


class PersonDetailStage(DetailStage):
    name = "person-detail"

    def __init__(self, cfg: DetailConfig, detail_file: str | Path, teacher_file: str | Path, dataset, coarse,
                 adapter_width: int = 32, deadline: float | None = None, albedo_model=None):
        cfg.loss = replace(TRANSFER_WEIGHTS, teacher_l1=cfg.loss.teacher_l1, teacher_ssim=cfg.loss.teacher_ssim)
        cfg.teacher = str(teacher_file)
        super().__init__(cfg, dataset=dataset, coarse=coarse, albedo_model=albedo_model)
        self.detail_file = Path(detail_file)
        self.adapter_width = adapter_width
        self.deadline = deadline

    def setup(self, info) -> None:
        net, meta = read_detail_network(self.detail_file, "mae")
        inf = meta.get("inference") or {}
        for p in net.parameters():
            p.requires_grad_(False)
        add_adapters(net, self.adapter_width)
        self.person_params = net.transfer_parameters()
        for p in self.person_params:
            p.requires_grad_(True)
        self.detail_meta = meta
        self.cfg.model.map_size = int(inf.get("map_size", self.cfg.model.map_size))
        self.cfg.model.image_size = int(inf.get("image_size", self.cfg.model.image_size))
        from facetwin.models.coarse import load_albedo

        albedo = self._albedo if self._albedo is not None else load_albedo("open")
        self.detail = DetailModel(self._coarse, net, self.cfg.model.map_size, self.cfg.model.image_size,
                                  albedo_model=albedo, highpass=float(inf.get("highpass", 0.0))).to(info.device)
        for p in self.detail.coarse.parameters():
            p.requires_grad_(False)
        self.model = net
        self.coarse_file = None
        self._setup_teacher(info)
        if self.teacher is None:
            raise FacetwinError("the detail part of personalisation needs the UNet teacher (L_Tchr): pass --teacher")
        self.dataset = self._dataset
        self._train_identity = np.zeros(len(self.dataset), int)
        self._repeats = None

    def parameter_groups(self, model, optim):
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def epoch_batches(self, epoch, rng, batch_size):
        """Random batches over the person's frames; a set smaller than a batch is repeated to fill it."""
        n = len(self.dataset)
        order = np.concatenate([rng.permutation(n) for _ in range(max(1, math.ceil(batch_size / n)))])
        return [order[i * batch_size:(i + 1) * batch_size].tolist() for i in range(len(order) // batch_size)]

    def should_stop(self, step: int) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def evaluate(self, model, step):
        return None

    def export(self, model, out_dir, step, config):
        return None  # the person file carries the result (training/personalize.py)

    def person_state(self) -> dict[str, torch.Tensor]:
        """The detail MAE's person parameters, detached float32 copies (state-dict names)."""
        sd = self.model.state_dict()
        return {n: sd[n].detach().float().clone() for n in detail_parameter_names(self.model)}
