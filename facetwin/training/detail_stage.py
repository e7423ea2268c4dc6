"""The detail stages (paper section 3.3) for the generic :class:`facetwin.training.engine.Trainer`:
``facetwin train detail-teacher`` (the UNet teacher D_UNet, Eq. 4: L_phoD + L_mrf + L_smo + L_regD)
and ``facetwin train detail`` (the detail MAE, Eq. 6: L_animD = L_UNet + L_Tchr + L_sym + L_dc
with the frozen teacher). The coarse model is frozen in both.

The stages only schedule: the forward and the loss inputs are the model layer's
(:meth:`facetwin.models.detail.DetailModel.loss_inputs`), the loss terms the losses layer's
(:func:`facetwin.losses.detail.detail_losses`, weights in ``loss:``), the data the one prepared-data
reader. Clips named in ``data.holdout`` (by clip name, e.g. ``mead_M026_level_3_disgusted_018``)
are never trained on; the periodic evaluation (``run.eval_every``) scores the photometric error of
the coarse render and of the render with details on their frames.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from facetwin.data.prepared import PreparedDataConfig, clip_name
from facetwin.errors import FacetwinError
from facetwin.losses.detail import MRF_BLOCKS, DetailLossWeights, detail_losses
from facetwin.models.detail import MODEL_FILE_NAMES, DetailModel, DetailModelConfig, build_network, export_detail
from facetwin.training.config import ConfigError, OptimConfig, RunConfig
from facetwin.training.engine import Stage

# Four clips of four different people, with strong expressions, never trained on.
DEFAULT_HOLDOUT = ["mead_M026_level_3_disgusted_018", "smirk_skarsgard", "styletalk_happyenglish_clip2", "liveportrait_d12"]


@dataclass
class DetailDataConfig(PreparedDataConfig):
    """The ``data:`` section: a prepared folder, which of its items, the held-out clips."""

    crop_size: int = 224              # the prepared crops' own side: the texture is unwrapped at full resolution
    preload: bool = False             # 13k crops of 224² are 2 GB; reading a JPEG costs little next to a step
    fill_border: float = 0.0          # the border is never on the face: no need
    identity_batches: bool = False    # the teacher takes single images; the MAE several frames of one clip
    sources: list[str] = field(default_factory=list)  # key prefixes to train on (e.g. ["videos/"]); [] = all
    holdout: list[str] = field(default_factory=lambda: list(DEFAULT_HOLDOUT))  # clip names for evaluation only
    eval_frames: int = 24             # held-out frames scored per evaluation (spread evenly over the clips)

    def __post_init__(self):
        super().__post_init__()
        for name in ("sources", "holdout"):
            v = getattr(self, name)
            if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
                raise ConfigError(f"data.{name} must be a list of non-empty strings, got {v!r}")
        if self.eval_frames < 1:
            raise ConfigError(f"data.eval_frames must be >= 1, got {self.eval_frames}")


@dataclass
class DetailConfig:
    """``facetwin train detail-teacher`` / ``facetwin train detail`` (configs/detail*.yaml)."""

    model: DetailModelConfig = field(default_factory=DetailModelConfig)
    data: DetailDataConfig = field(default_factory=DetailDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    loss: DetailLossWeights = field(default_factory=DetailLossWeights)  # every weight of Eqs. 4–7 (losses/detail.py)
    teacher: str = ""                 # MAE: the frozen teacher's model file ('' = no teacher: L_Tchr, L_sym, L_dc off)


def held_out(key: str, holdout: list[str]) -> bool:
    """True when a prepared item's key belongs to one of the held-out clips (``videos/<clip>.<ext>#f…``)."""
    return clip_name(key) in holdout


class _Subset(Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


class DetailTeacherStage(Stage):
    """The UNet teacher D_UNet: texture + visibility → D, trained by shape from shading."""

    name = "detail-teacher"
    config_class = DetailConfig
    default_config = "detail-teacher"
    help = "train the detail teacher (UNet: unwrapped texture → displacement map)"
    network_kind = "unet"

    def __init__(self, cfg: DetailConfig, dataset=None, coarse=None, eval_dataset=None, albedo_model=None):
        self.cfg = cfg
        self._dataset = dataset            # tests: a ready dataset (all of it is trained on)
        self._eval_dataset = eval_dataset
        self._coarse = coarse
        self._albedo = albedo_model
        self.weights = cfg.loss
        self.features = None
        self.teacher = None

    # -- set-up ----------------------------------------------------------------------------
    def setup(self, info) -> None:
        from facetwin.models.coarse import load_albedo, load_coarse_model, resolve_model_file

        cfg = self.cfg
        if cfg.model.network != self.network_kind:
            raise FacetwinError(f"'facetwin train {self.name}' trains model.network={self.network_kind}, "
                                f"the config says {cfg.model.network!r}")
        self.coarse_file = resolve_model_file(cfg.model.coarse_model)  # its SHA-256 goes into the model file
        coarse = self._coarse if self._coarse is not None else load_coarse_model(self.coarse_file)[0]
        albedo = self._albedo if self._albedo is not None else load_albedo("open")
        net_cfg = cfg.model.unet if self.network_kind == "unet" else cfg.model.mae
        net = build_network(self.network_kind, net_cfg, cfg.model.map_size)
        if cfg.model.init:  # warm start: the same network's weights from a detail model file
            from facetwin.models.detail import read_detail_network

            start, _ = read_detail_network(cfg.model.init, self.network_kind)
            try:
                net.load_state_dict(start.state_dict())
            except RuntimeError:
                kind = self.network_kind
                raise FacetwinError(f"model.init {Path(cfg.model.init).name} is another {kind} than model.{kind} describes") from None
        self.detail = DetailModel(coarse, net, cfg.model.map_size, cfg.model.image_size, albedo_model=albedo,
                                  highpass=cfg.model.highpass).to(info.device)
        self.model = self.detail.network
        if self.weights.mrf > 0:
            self.features = _mrf_features(info.device, self.weights.mrf)
        self._setup_teacher(info)
        self._setup_data(info)

    def _setup_teacher(self, info) -> None:
        pass

    def _setup_data(self, info) -> None:
        cfg = self.cfg
        if self._dataset is not None:
            self.dataset = self._dataset
            self._train_identity = np.asarray(getattr(self._dataset, "identity_of", np.arange(len(self._dataset))))
            self._repeats = None
            return
        from facetwin.data.prepared import PreparedDataset

        root = Path(cfg.data.root)
        ds = PreparedDataset(root, cfg.model.image_size, augment=cfg.data.augment, preload=cfg.data.preload,
                             oversample=dict(cfg.data.oversample), sources=cfg.data.sources or None, quiet=not info.is_main)
        train = [i for i, k in enumerate(ds.keys) if not held_out(k, cfg.data.holdout)]
        if not train:
            raise FacetwinError(f"no training items left in {root} after holding out {', '.join(cfg.data.holdout)}")
        self.dataset = _Subset(ds, train)
        self._train_identity = ds.identity_of[train]
        self._repeats = ds.repeats[train]
        if self._eval_dataset is None and cfg.data.holdout and cfg.run.eval_every:
            ev = PreparedDataset(root, cfg.model.image_size, augment=False, sources=[f"videos/{c}." for c in cfg.data.holdout])
            missing = [c for c in cfg.data.holdout if not any(held_out(k, [c]) for k in ev.keys)]
            if missing and info.is_main:
                print(f"facetwin: note: held-out clip(s) not in {root}: {', '.join(missing)}", file=sys.stderr)
            self._eval_dataset = ev

    def epoch_batches(self, epoch, rng, batch_size):
        if self.cfg.data.identity_batches:
            from facetwin.data.samplers import identity_batches

            return identity_batches(self._train_identity, rng, batch_size, self.cfg.data.images_per_identity,
                                    self._repeats, strict=True)
        return super().epoch_batches(epoch, rng, batch_size)

    # -- forward + losses ------------------------------------------------------------------
    def training_step(self, model, batch, step):
        with self.autocast():
            inputs, geo, maps = self.detail.loss_inputs(batch, network=model, teacher=self.teacher,
                                                        consistency=self.teacher is not None and self.weights.consistency > 0,
                                                        render=self.weights.photometric > 0)  # ID-MRF reads the render too
        terms = detail_losses(inputs, self.weights, features=self.features)
        logs = {k: float(v.detach()) for k, v in terms.items() if k != "total"}
        d = maps.displacement.detach()
        logs["d_abs_mm"] = float(1000 * (d.abs() * self.detail.uv_mask).sum() / (self.detail.uv_mask.sum() * len(d)))
        return terms["total"], logs

    # -- pictures, evaluation, model file ------------------------------------------------------
    def visuals(self, model, batch, n: int = 6):
        return self.detail.picture(batch["image"][:n], network=model)

    def evaluate(self, model, step):
        ev = self._eval_dataset
        if ev is None or len(ev) == 0:
            return None
        n = min(len(ev), self.cfg.data.eval_frames)
        idx = np.unique(np.linspace(0, len(ev) - 1, n).round().astype(int))
        coarse, detail = [], []
        for s in range(0, len(idx), 4):
            b = torch.utils.data.default_collate([ev[int(i)] for i in idx[s:s + 4]])
            dev = self.detail.uv_mask.device
            e = self.detail.photometric_errors(b["image"].to(dev), b["skin"].to(dev))
            coarse.append(e["coarse"])
            detail.append(e["detail"])
        c, d = torch.cat(coarse).mean().item(), torch.cat(detail).mean().item()
        return {"photometric_coarse": c, "photometric_detail": d, "photometric_gain": (c - d) / c if c else 0.0,
                "frames": float(len(idx))}

    def export(self, model, out_dir, step, config):
        return export_detail(self.detail, Path(out_dir) / MODEL_FILE_NAMES[self.network_kind], self.coarse_file, step=step,
                             config=config, command=(config or {}).get("command", ""))

    @classmethod
    def summary(cls, summary: dict) -> dict:
        last = summary["last"]
        return {**Stage.summary(summary), "photometric": last.get("photometric"), "d_abs_mm": last.get("d_abs_mm"),
                "model_file": f"{summary['out_dir']}/export/{MODEL_FILE_NAMES[cls.network_kind]}"}


class DetailStage(DetailTeacherStage):
    """The detail MAE 𝒜: texture + visibility + T_UV (+ x_d) → D, under the frozen teacher."""

    name = "detail"
    default_config = "detail"
    help = "train the detail MAE (texture + tension → animatable displacement map) under the frozen UNet teacher"
    network_kind = "mae"

    def _setup_teacher(self, info) -> None:
        if not self.cfg.teacher:
            return  # the "MAE without teacher" ablation: L_UNet terms only
        from facetwin.models.detail import read_detail_network

        net, meta = read_detail_network(self.cfg.teacher, "unet")
        inf = meta.get("inference") or {}
        if int(inf.get("map_size", self.cfg.model.map_size)) != self.cfg.model.map_size:
            raise FacetwinError(f"teacher {Path(self.cfg.teacher).name} makes {inf.get('map_size')}² maps, "
                                f"model.map_size is {self.cfg.model.map_size}")
        for p in net.parameters():
            p.requires_grad_(False)
        self.teacher = net.to(info.device).eval()


def _mrf_features(device, weight: float):
    """The dlib descriptor's residual blocks 4 and 8 (L_mrf), frozen; a FacetwinError when it cannot load."""
    try:
        from facetwin.networks.face_recognition import load_face_descriptor

        desc = load_face_descriptor().to(device).eval()
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FacetwinError(f"loss.mrf={weight:g} needs the dlib face descriptor, which cannot be loaded ({reason}); "
                            "set loss.mrf=0") from None
    for p in desc.parameters():
        p.requires_grad_(False)
    return lambda x: desc.features(x, MRF_BLOCKS)
