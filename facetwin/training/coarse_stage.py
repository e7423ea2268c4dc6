"""The coarse stage (paper section 3.2) for the generic :class:`facetwin.training.engine.Trainer`,
and its typed config :class:`CoarseConfig`.

The stage only schedules: the forward and the loss inputs are the model layer's
(:meth:`facetwin.models.coarse.CoarseModel.loss_inputs`), the loss terms the losses layer's
(:func:`facetwin.losses.coarse.coarse_losses`), the data the one prepared-data reader
(:mod:`facetwin.data.prepared`, batch keys ``image``, ``landmarks``, ``skin``, ``occluder``,
``identity``), the model file :mod:`facetwin.models.files`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from facetwin.data.prepared import PreparedDataConfig
from facetwin.errors import FacetwinError
from facetwin.losses.coarse import CoarseLossWeights, coarse_losses
from facetwin.models import files
from facetwin.models.coarse import (IDENTITY_PREFIX, CoarseModel, CoarseModelConfig, UniformAlbedo, build_encoder, export_encoder,
                                    identity_head_from, load_albedo)
from facetwin.networks.coarse_encoder import CoarseParams
from facetwin.training.config import ConfigError, OptimConfig, RunConfig, to_dict
from facetwin.training.engine import Stage


@dataclass
class RenderConfig:
    """The ``render:`` section: everything about the render the photometric and identity terms
    read (``render: false`` is short for ``render: {enabled: false}``)."""

    enabled: bool = True          # photometric / identity terms need the render
    size: int = 0                 # render (and photometric / identity terms) at size² (0 = the crop size)
    identity_images: int = 0      # L_id on only the first N images of a batch (0 = all): it is costly on CPU
    landmark_only_steps: int = 0  # DECA-style start: no render (photometric / identity) before this step
    albedo: str = "open"          # "open" (the shipped albedo model) | "uniform" (a per-image colour)

    def __post_init__(self):
        for name in ("size", "identity_images", "landmark_only_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"render.{name} must be >= 0, got {getattr(self, name)}")
        if self.albedo not in ("open", "uniform"):
            raise ConfigError(f"render.albedo must be 'open' or 'uniform', not {self.albedo!r}")


@dataclass
class CoarseEvalConfig:
    """The ``eval:`` section: the periodic evaluations of a coarse run (every ``run.eval_every`` steps)."""

    helen: str = ""               # folder with images + .pts (e.g. data:eval/helen-test); '' = off
    limit: int = 0                # only the first N images (0 = all)
    likeness: str = ""            # folder of person sub-folders (e.g. data:identities/eval): `evaluate likeness` figures; '' = off


@dataclass
class CoarseTrainingSections:
    """The sections every stage trained with L_C shares (coarse, identity head)."""

    data: PreparedDataConfig = field(default_factory=PreparedDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    loss: CoarseLossWeights = field(default_factory=CoarseLossWeights)  # every weight of Eq. 2 (losses/coarse.py)
    render: RenderConfig = field(default_factory=RenderConfig)
    eval: CoarseEvalConfig = field(default_factory=CoarseEvalConfig)


@dataclass
class CoarseConfig(CoarseTrainingSections):
    """``facetwin train coarse`` (configs/coarse.yaml)."""

    model: CoarseModelConfig = field(default_factory=CoarseModelConfig)


# Keys of the first config layout (before the ``render:`` section), as model files of that time
# store their ``train_config`` (the shipped model file among them).
_V1_RENDER_KEYS = {"render_size": "size", "identity_images": "identity_images", "landmark_only_steps": "landmark_only_steps"}


def config_from_model_file(train_config: dict) -> CoarseConfig:
    """The :class:`CoarseConfig` a model file was trained with (its ``train_config``), in either
    layout: the first one kept ``render`` (a bool), ``render_size``, ``identity_images`` and
    ``landmark_only_steps`` at the top level, the current one in the ``render:`` section.
    A mistake is a :class:`ConfigError` naming the key."""
    from facetwin.training.config import from_dict

    data = {k: v for k, v in (train_config or {}).items() if k != "command"}
    moved = {new: data.pop(old) for old, new in _V1_RENDER_KEYS.items() if old in data}
    if moved:
        render = data.get("render", True)
        render = dict(render) if isinstance(render, dict) else {"enabled": bool(render)}
        data["render"] = {**moved, **render}
    return from_dict(CoarseConfig, data)


class CoarseStage(Stage):
    name = "coarse"
    config_class = CoarseConfig
    default_config = "coarse"
    help = "train the coarse base model (ViT → head-model parameters)"
    model_file = MODEL_FILE = "coarse_encoder.safetensors"

    def __init__(self, cfg: CoarseConfig, dataset=None, head_model=None, identity_loss=None):
        self.cfg = cfg
        self._dataset = dataset
        self._head_model = head_model
        self.identity_loss = identity_loss
        self.weights = cfg.loss
        self.init_steps = 0  # steps behind model.init_checkpoint

    # -- set-up ----------------------------------------------------------------------------
    def setup(self, info) -> None:
        from facetwin.headmodel import load_head_model

        cfg = self.cfg
        dev = info.device
        head = self._head_model if self._head_model is not None else load_head_model(cfg.model.head_model)
        albedo = load_albedo(cfg.render.albedo)
        encoder = build_encoder(cfg.model, head, int(getattr(albedo, "n_coefficients", 3)))
        if cfg.model.pretrained:
            from facetwin.networks.vit import load_pretrained

            load_pretrained(encoder.vit, cfg.model.pretrained)
        identity_head = None
        if cfg.model.init_checkpoint:
            state, init_meta = files.read_model_file(Path(cfg.model.init_checkpoint), files.COARSE_ENCODER)
            if init_meta.get("identity_head"):  # kept, frozen: β = β_ViT + head(descriptor) as at inference
                identity_head = identity_head_from(state, init_meta, Path(cfg.model.init_checkpoint).name)
                identity_head = identity_head.to(dev).requires_grad_(False)
                state = {k: v for k, v in state.items() if not k.startswith(IDENTITY_PREFIX)}
            try:
                encoder.load_state_dict(state)
            except RuntimeError as exc:
                raise FacetwinError(f"model.init_checkpoint {cfg.model.init_checkpoint} does not fit this model "
                                    f"(model.size / hidden / head model differ): {str(exc).splitlines()[0]}") from None
            # a fine-tuned / warm-restarted model reports the steps behind it in total
            self.init_steps = int(init_meta.get("total_steps", init_meta.get("step", 0)))
        self.coarse = CoarseModel(encoder, head, albedo, identity_head=identity_head).to(dev)
        self.model = self.coarse.encoder
        self.coarse.render_size = cfg.render.size or cfg.data.crop_size  # also the z-buffer of silhouette_outline
        if cfg.render.enabled and not self.coarse.attach_renderer(self.coarse.render_size):
            raise FacetwinError(f"head model '{head.name}' has no UV layout for the albedo model: "
                                "set render.albedo=uniform or render.enabled=false")
        self._check_terms(dev)
        if self._dataset is None:
            from facetwin.data.prepared import open_prepared

            self._dataset = open_prepared(cfg.data, quiet=not info.is_main)
        self.dataset = self._dataset

    def _check_terms(self, dev) -> None:
        """A weighted term whose network cannot run stops the run here, at the start."""
        w, cfg = self.weights, self.cfg
        render_terms = [n for n in ("photometric", "identity") if getattr(w, n) > 0]
        if render_terms and not cfg.render.enabled:
            return  # the render terms are simply not computed (landmark-only training)
        for name in ("emotion", "lip_reading"):
            if getattr(w, name) > 0:
                raise FacetwinError(f"loss.{name}={getattr(w, name)} needs a network facetwin does not ship; set loss.{name}=0")
        if self.identity_loss is None and w.identity > 0 and cfg.render.enabled:
            self.identity_loss = _identity_loss(dev, w.identity)
            if cfg.render.identity_images > 0:
                self.identity_loss = _first_images(self.identity_loss, cfg.render.identity_images)

    def parameter_groups(self, model, optim):
        backbone = [p for n, p in model.named_parameters() if n.startswith("vit.") and p.requires_grad]
        other = [p for n, p in model.named_parameters() if not n.startswith("vit.") and p.requires_grad]
        return [{"params": backbone}, {"params": other, "lr": optim.lr * optim.head_lr_scale}]

    def epoch_batches(self, epoch, rng, batch_size):
        ds = self.dataset
        if self.cfg.data.identity_batches and hasattr(ds, "identity_batches"):
            return ds.identity_batches(rng, batch_size, self.cfg.data.images_per_identity)
        return super().epoch_batches(epoch, rng, batch_size)

    # -- forward + losses ------------------------------------------------------------------
    def forward(self, model, batch, with_render: bool = True):
        """(CoarseLossInputs, geometry): the encoder (``model``, maybe DDP-wrapped) under the
        engine's autocast, then the model layer's loss-input assembly."""
        images = batch["image"].float()
        with self.autocast():
            own = model(self.coarse.encoder_input(images))
        # one β for every image, or a frozen identity head (from the init model file), as at inference
        encoder = getattr(model, "module", model)
        params = self.coarse.complete(own, images, encoder=encoder, shape=self.shared_shape(encoder))
        return self.coarse.loss_inputs(params, batch, self.weights, with_render=with_render,
                                       prior_shape=self.shape_prior(encoder, own, params))

    def shared_shape(self, encoder) -> torch.Tensor | None:
        """(n_shape,) one β for every image that ``encoder`` carries (a person run's), or None: β per image."""
        return None

    def shape_prior(self, encoder, own: CoarseParams, params: CoarseParams) -> torch.Tensor | None:
        """(B, n_shape) what the β prior acts on: what this run trains, the encoder's own β (on
        β + a frozen head's Δβ it would teach the encoder to cancel the head's identity: |β|² ≈ 600,
        ~2/3 of L_C); None: ``params.shape`` (no head)."""
        return own.shape.float() if params.shape is not own.shape else None

    def training_step(self, model, batch, step):
        with_render = self.cfg.render.enabled and step >= self.cfg.render.landmark_only_steps
        inputs, geo = self.forward(model, batch, with_render=with_render)
        total, terms = coarse_losses(inputs, self.weights, identity_loss=self.identity_loss)
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs["nme"] = float(batch_nme(geo.landmarks2d.detach(), batch["landmarks"].float(), geo.crop_size))
        logs.update(self.step_logs(geo))
        return total, logs

    def step_logs(self, geo) -> dict[str, float]:
        """Figures a stage adds to each step's log (from the step's geometry); none here."""
        return {}

    # -- pictures, evaluation, model file ------------------------------------------------------
    def visuals(self, model, batch, n: int = 6):
        sub = {k: v[:n] if torch.is_tensor(v) else v for k, v in batch.items()}
        inputs, geo = self.forward(model, sub, with_render=self.coarse.renderer is not None)
        return self.coarse.picture(inputs, geo)

    def evaluate(self, model, step):
        if not (self.cfg.eval.helen or self.cfg.eval.likeness):
            return None
        out = {}
        if self.cfg.eval.helen:
            from facetwin.evaluation.landmarks import evaluate_folder

            res = evaluate_folder(self.coarse, resolve_data_path(self.cfg.eval.helen), limit=self.cfg.eval.limit or None, progress=False)
            out.update({k: v for k, v in res.items() if isinstance(v, float)})
        if self.cfg.eval.likeness:  # identity in β and render likeness on a folder of people
            from facetwin.evaluation.likeness import evaluate_likeness

            albedo = None if isinstance(self.coarse.albedo_model, UniformAlbedo) else self.coarse.albedo_model
            res = evaluate_likeness(self.coarse, resolve_data_path(self.cfg.eval.likeness), albedo_model=albedo, progress=False)
            out.update({f"likeness_{k}": v for k, v in res.items() if isinstance(v, float)})
        return out

    def export(self, model, out_dir, step, config):
        return export_encoder(self.coarse.encoder, Path(out_dir) / self.model_file, self.coarse.head_model.name,
                              contour=self.weights.contour_mode, step=step, config=config,
                              command=(config or {}).get("command", ""), init_steps=self.init_steps,
                              identity_head=self.coarse.identity_head)

    @staticmethod
    def summary(summary: dict) -> dict:
        return {**Stage.summary(summary), "train_nme": summary["last"].get("nme"),
                "model_file": f"{summary['out_dir']}/export/{CoarseStage.model_file}"}


def _first_images(loss_fn, n: int):
    """A perceptual loss evaluated on the first ``n`` images of the batch only (CPU budget)."""

    def fn(composite, image, landmarks=None):
        return loss_fn(composite[:n], image[:n], None if landmarks is None else landmarks[:n])

    return fn


def resolve_data_path(spec: str) -> Path:
    """``data:eval/helen-test`` → ``$FACETWIN_DATA/eval/helen-test`` (or ../shared/data/...)."""
    from facetwin.paths import shared_data_dir

    if spec.startswith("data:"):
        return shared_data_dir() / spec[5:]
    return Path(spec)


def batch_nme(pred: torch.Tensor, gt: torch.Tensor, crop_size: float) -> torch.Tensor:
    """Mean 68-point NME (outer-eye-corner normalised) of a batch; the normaliser is at least
    10 % of the crop so that profile views (eye corners close together) do not dominate."""
    d = (pred - gt).norm(dim=-1).mean(-1)
    norm = (gt[:, 36] - gt[:, 45]).norm(dim=-1).clamp_min(0.1 * crop_size)
    return (d / norm).mean()


def _identity_loss(device, weight: float):
    """DECA's L_id through dlib's face descriptor (ported to torch, with dlib's face-chip
    alignment from the landmarks). A FacetwinError (the run stops at start) when it cannot load."""
    try:
        from facetwin.losses.identity import dlib_identity_loss

        return dlib_identity_loss(device=device)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FacetwinError(f"loss.identity={weight:g} needs the dlib face descriptor, which cannot be loaded ({reason}); "
                            "set loss.identity=0 to train without L_id") from None


def config_summary(cfg: CoarseConfig) -> str:
    import json

    return json.dumps(to_dict(cfg), sort_keys=True)
