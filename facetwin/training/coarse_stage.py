"""The coarse stage (paper section 3.2) for the generic :class:`facetwin.training.engine.Trainer`.

Batch (from the data pipeline): ``image`` (B, 3, S, S) in [0, 1], ``landmarks`` (B, 68, 2) crop
pixels, ``skin_mask`` (B, 1, S, S), ``identity`` (B,) int (-1 unknown), optional
``occluder_mask`` and ``landmark_weight``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facetwin.inference.coarse_model import CoarseModel
from facetwin.losses.coarse import CoarseLossInputs, CoarseLossWeights, coarse_losses
from facetwin.networks.coarse_encoder import CoarseEncoder, HeadLayout
from facetwin.training import checkpoint as ckpt
from facetwin.training.config import CoarseConfig, to_dict
from facetwin.training.engine import Stage


def build_encoder(cfg: CoarseConfig, head_model, n_albedo: int) -> CoarseEncoder:
    layout = HeadLayout.from_head_model(head_model, n_albedo, cfg.model.n_shape or None, cfg.model.n_expr or None)
    return CoarseEncoder(layout, size=cfg.model.size, image_size=cfg.model.image_size, hidden=cfg.model.hidden,
                         face_fraction=cfg.model.face_fraction, predict_jaw=cfg.model.predict_jaw,
                         head_init_std=cfg.model.head_init_std, centre_y=cfg.model.centre_y)


def load_albedo_model(n_default: int = 0):
    """The open albedo model if it is installed, else None (a uniform per-image colour is used)."""
    try:
        from facetwin.appearance import load_albedo_model as _load  # type: ignore
    except ImportError:
        return None
    try:
        return _load()
    except Exception:
        return None


class UniformAlbedo(torch.nn.Module):
    """Stand-in albedo: coefficients 0..2 are an RGB offset from a mean skin tone; texture (B, 3, 2, 2)."""

    n_coefficients = 3

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        base = coeffs.new_tensor([0.62, 0.45, 0.38])
        rgb = (base + 0.1 * coeffs[:, :3]).clamp(0, 1)
        return rgb[:, :, None, None].expand(-1, -1, 2, 2)


class CoarseStage(Stage):
    name = "coarse"

    def __init__(self, cfg: CoarseConfig, dataset=None, head_model=None, identity_loss=None):
        self.cfg = cfg
        self._dataset = dataset
        self._head_model = head_model
        self.identity_loss = identity_loss
        self.weights = CoarseLossWeights.from_dict(dict(cfg.loss))
        self.init_steps = 0  # steps behind model.init_checkpoint

    # -- set-up ----------------------------------------------------------------------------
    def setup(self, info) -> None:
        from facetwin.headmodel import load_head_model

        cfg = self.cfg
        dev = info.device
        head = self._head_model if self._head_model is not None else load_head_model(cfg.model.head_model)
        self.albedo_model = load_albedo_model()
        if self.albedo_model is None:
            self.albedo_model = UniformAlbedo()
        n_albedo = int(getattr(self.albedo_model, "n_coefficients", 3))
        encoder = build_encoder(cfg, head, n_albedo)
        if cfg.model.pretrained:
            from facetwin.networks.vit import load_pretrained

            load_pretrained(encoder.vit, cfg.model.pretrained)
        if cfg.model.init_checkpoint:
            state, init_meta = ckpt.read_safetensors(Path(cfg.model.init_checkpoint))
            encoder.load_state_dict(state)
            # a fine-tuned / warm-restarted model reports the steps behind it in total
            self.init_steps = int(init_meta.get("total_steps", init_meta.get("step", 0)))
        self.coarse = CoarseModel(encoder, head, self.albedo_model).to(dev)
        self.model = self.coarse.encoder
        self.renderer = None
        self.render_size = cfg.render_size or cfg.data.crop_size  # also the z-buffer of silhouette_outline
        if cfg.render:
            from facetwin.rendering import MeshRenderer

            data = head.data
            if data.uv_coords is not None or isinstance(self.albedo_model, UniformAlbedo):
                uv, uvf = data.uv_coords, data.uv_faces
                if uv is None:  # uniform albedo: any UV works
                    uv, uvf = np.zeros((1, 2), np.float32), np.zeros_like(data.faces)
                self.renderer = MeshRenderer(data.faces, uv, uvf, self.render_size).to(dev)
        if self.identity_loss is None and self.weights.identity > 0 and cfg.render:
            self.identity_loss = _identity_loss(dev)
            if self.identity_loss is not None and cfg.identity_images > 0:
                self.identity_loss = _first_images(self.identity_loss, cfg.identity_images)
        if self._dataset is None:
            from facetwin.training.coarse_data import open_dataset

            self._dataset = open_dataset(cfg.data, quiet=not info.is_main)
        self.dataset = self._dataset

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
        """Everything the losses need: (CoarseLossInputs, geometry)."""
        images = batch["image"].float()
        with self.autocast():
            params = model(self.coarse.encoder_input(images))
        geo = self.coarse.geometry(params, images.shape[-1])
        render = render_mask = fragments = None
        if with_render and self.renderer is not None:
            render, render_mask, fragments = self.render(geo)
        # the outline test reuses the render's z-buffer (same camera, same size) when there is one
        sil = self.coarse.silhouette(geo, self.render_size if self.weights.silhouette_outline else None, fragments)
        swapped = None
        if self.weights.shape_consistency > 0 and "identity" in batch:
            swapped = self.coarse.swapped_landmarks(geo, batch["identity"])
        dyn = self.coarse.marching_contour(geo) if self.weights.contour_mode == "marching" else None
        if self.weights.contour_mode == "marching" and dyn is None:
            dyn = geo.landmarks2d[:, :17]  # static contour when the head model has no marching table
        p = geo.params
        image_r, skin, occ = images, batch.get("skin_mask"), batch.get("occluder_mask")
        if render is not None and render.shape[-1] != images.shape[-1]:
            # Everything at the render resolution: pixel quantities scale by R / crop, and the
            # landmark terms are normalised by the image size, so they do not change.
            R = render.shape[-1]
            image_r = F.interpolate(images, size=(R, R), mode="bilinear", align_corners=False, antialias=True)
            skin = None if skin is None else (F.interpolate(skin.float(), size=(R, R), mode="area") > 0.5).float()
            occ = None if occ is None else (F.interpolate(occ.float(), size=(R, R), mode="area") > 0.0).float()
            f = R / images.shape[-1]
        else:
            f = 1.0
        inputs = CoarseLossInputs(
            landmarks2d=geo.landmarks2d * f, landmarks_normal_z=geo.landmarks_normal_z, vertices2d=geo.vertices2d * f,
            silhouette=sil, shape=p.shape, expression=p.expression, albedo=p.albedo, light=p.light,
            image=image_r, gt_landmarks=batch["landmarks"].float() * f, render=render, render_mask=render_mask,
            swapped_landmarks2d=None if swapped is None else swapped * f, dynamic_contour2d=None if dyn is None else dyn * f,
            pose=p.pose, skin_mask=skin, occluder_mask=occ, landmark_weight=batch.get("landmark_weight"),
            perceptual_mask=self.face_region(fragments), identity=batch.get("identity"),
        )
        return inputs, geo

    def face_region(self, fragments):
        """(B, 1, R, R) face-region pixels of the render when ``loss.perceptual_region`` is "face", else None."""
        if fragments is None or self.weights.perceptual_region != "face":
            return None
        from facetwin.rendering.regions import region_mask, region_triangles

        if getattr(self, "_face_triangles", None) is None:
            data = self.coarse.head_model.data
            self._face_triangles = torch.as_tensor(region_triangles(data.faces, data.masks))
        return region_mask(fragments, self._face_triangles)

    def render(self, geo):
        """(render (B, 3, R, R), mask (B, 1, R, R), its Fragments) at ``render_size`` R."""
        from facetwin.geometry.camera import orthographic_screen_vertices

        f = self.render_size / geo.crop_size
        screen = orthographic_screen_vertices(geo.vertices, geo.scale_px * f, geo.translation_px * f)
        albedo = self.albedo_model(geo.params.albedo)
        out = self.renderer.render(screen, geo.vertices, albedo, geo.params.light)
        return out.image.clamp(0, 1), out.mask, out.fragments

    def training_step(self, model, batch, step):
        with_render = self.cfg.render and step >= self.cfg.landmark_only_steps
        inputs, geo = self.forward(model, batch, with_render=with_render)
        total, terms = coarse_losses(inputs, self.weights, identity_loss=self.identity_loss)
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs["nme"] = float(batch_nme(geo.landmarks2d.detach(), batch["landmarks"].float(), geo.crop_size))
        return total, logs

    # -- pictures, evaluation, export --------------------------------------------------------
    def visuals(self, model, batch, n: int = 6):
        from facetwin.training.visuals import coarse_grid

        sub = {k: v[:n] if torch.is_tensor(v) else v for k, v in batch.items()}
        inputs, geo = self.forward(model, sub, with_render=self.renderer is not None)
        return coarse_grid(inputs, geo, self.coarse.head_model.faces)

    def evaluate(self, model, step):
        if not (self.cfg.eval.helen or self.cfg.eval.likeness):
            return None
        out = {}
        if self.cfg.eval.helen:
            from facetwin.inference.landmark_eval import evaluate_folder

            res = evaluate_folder(self.coarse, resolve_data_path(self.cfg.eval.helen), limit=self.cfg.eval.limit or None, progress=False)
            out.update({k: v for k, v in res.items() if isinstance(v, float)})
        if self.cfg.eval.likeness:  # identity in β and render likeness on a folder of people
            from facetwin.evaluation.likeness import evaluate_likeness

            albedo = None if isinstance(self.albedo_model, UniformAlbedo) else self.albedo_model
            res = evaluate_likeness(self.coarse, resolve_data_path(self.cfg.eval.likeness), albedo_model=albedo, progress=False)
            out.update({f"likeness_{k}": v for k, v in res.items() if isinstance(v, float)})
        return out

    def export(self, model, out_dir, step, config):
        return export_encoder(self.coarse.encoder, Path(out_dir) / "coarse_encoder.safetensors", self.coarse.head_model.name,
                              step=step, config=config, command=(config or {}).get("command", ""), init_steps=self.init_steps)


def export_encoder(encoder: CoarseEncoder, path: Path, head_model_name: str, step: int = 0, config: dict | None = None,
                   command: str = "", init_steps: int = 0) -> Path:
    """``step``: this run's steps; ``total_steps`` adds those of the checkpoint it started from."""
    meta = {"format": "facetwin-coarse-encoder/1", "encoder": encoder.config(), "head_model": head_model_name,
            "step": step, "total_steps": init_steps + step, "train_config": config or {}, "command": command}
    return ckpt.export_safetensors(encoder.state_dict(), meta, path)


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


def _identity_loss(device):
    """DECA's L_id through dlib's face descriptor (ported to torch, with dlib's face-chip
    alignment from the landmarks), or None if unavailable."""
    try:
        from facetwin.losses.identity import dlib_identity_loss
    except ImportError:
        return None
    return dlib_identity_loss(device=device)


def config_summary(cfg: CoarseConfig) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True)
