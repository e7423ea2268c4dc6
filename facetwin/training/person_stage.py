"""Person-specific transfer, coarse part (paper section 3.4) as a stage of the generic engine.

The base coarse encoder is frozen; a Houlsby adapter goes into every ViT block and only the
adapters, the layer norms (:func:`facetwin.models.person.prepare_encoder`) and the person's β
train. Forward pass and losses are :class:`~facetwin.training.coarse_stage.CoarseStage`'s: L_C of
Eq. 2 with the base model's own weights (its export's ``train_config.loss``). What this stage adds:

* batches for tiny photo sets (fewer images than a batch: drawn with repeats, augmented anew);
* a held-out split: its 68-point NME (against the automatic annotator's labels) every
  ``run.eval_every`` steps; the best person parameters so far are kept; training stops after
  ``patience`` evaluations without a relative gain of ``min_delta`` (early stopping);
* a wall-clock budget (``deadline``, seconds of ``time.time()``) checked after every step;
* a progress bar over the budget with the running loss and the held-out NME;
* **one β for the person, trained** (``shared_beta``): a parameter on the encoder, started at
  the mean of the base model's β over the person's frames, used for every frame (the camera
  re-fitted to it, as at inference) and learnt with the adapters from all frames together; its
  prior is a tether to that start (the β prior's weight on β − start). L_sc is then satisfied by
  construction and is left out (it would count the landmark term twice). Without it (``shared_beta:
  false``) β stays per frame, pulled together by L_sc, and the person's β is their mean;
* the person's identity: that β, with the spread of the adapted encoder's per-frame β.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from facetwin.data.prepared import is_video_frame
from facetwin.models.person import person_state, prepare_encoder, write_person
from facetwin.training.coarse_stage import CoarseConfig, CoarseStage

PERSON_BETA = "person_beta"  # the encoder parameter of a shared_beta run (the person file stores it as the person's β)


@dataclass
class PersonSettings:
    """What person-specific transfer adds to a coarse config."""

    adapter_width: int = 32        # bottleneck of every adapter (32: 150k parameters for ViT-Tiny)
    patience: int = 6              # evaluations without gain before early stopping
    min_delta: float = 0.005       # relative held-out NME gain that counts as a gain
    contour: str = "static"        # held-out NME convention (as `facetwin evaluate landmarks`)
    shared_beta: bool = True       # one trained β for every frame (else per-frame β + L_sc)
    identity_on_beta: float = 0.0  # weight of L_id in a second pass where only the person's β has a gradient
    identity_on_appearance: float = 0.0  # weight of L_id in a pass where only albedo and light have a gradient
    beta_lr_scale: float = 30.0    # the person's β learns at 30× the run's lr: at 1× it barely moved in ~200 steps (measured)


# The L_id weights a photo set (no video frame among the training frames) gets by default. Measured
# on 6 identities/eval people (BENCHMARKS.md): with them the person's render is closer to new photos
# than the base model's on 5 of 6 (without them on 1 of 6) at an equal landmark error; on 4 videos
# they cost 6 points of the NME reduction (and made smirk_skarsgard worse than the base), so a
# set with a video keeps 0 — its many frames of one light already hold the identity.
PHOTO_IDENTITY_ON_BETA = 1.0
PHOTO_IDENTITY_ON_APPEARANCE = 5.0


def identity_weights(keys: list[str], on_beta: float | None = None,
                     on_appearance: float | None = None) -> tuple[float, float]:
    """(identity_on_beta, identity_on_appearance) for training frames ``keys`` (prepared keys; a
    video frame's holds ``#f`` and a frame number): a weight given is kept, one left ``None`` takes the photo-set
    default when no key is a video frame, else 0."""
    photos = bool(keys) and not any(is_video_frame(k) for k in keys)
    return (on_beta if on_beta is not None else (PHOTO_IDENTITY_ON_BETA if photos else 0.0),
            on_appearance if on_appearance is not None else (PHOTO_IDENTITY_ON_APPEARANCE if photos else 0.0))


@torch.no_grad()
def predict(stage: CoarseStage, encoder, dataset: Dataset, batch_size: int = 16, contour: str = "static",
            render: bool = False) -> dict[str, np.ndarray]:
    """Run ``encoder`` through ``stage``'s forward (head model, camera, render: the training
    pass) on a dataset of un-augmented crops (:class:`~facetwin.data.prepared.PreparedDataset` keys
    ``image``, ``landmarks``, ``skin``).

    Returns landmarks (N, 68, 2) as ``CoarseModel.image_landmarks(contour=...)`` places them,
    the labels (N, 68, 2), both in crop pixels, β (N, n_shape), the posed mesh (``vertices`` (N, V, 3)
    metres, ``scale_px`` (N,), ``translation_px`` (N, 2) in crop pixels), the head's ``yaw_deg`` (N,)
    (:func:`facetwin.geometry.rotation.head_yaw`, degrees) and, with ``render``, the
    per-frame photometric error (N,) (mean absolute RGB error in [0, 1] over the skin the render
    covers, as L_pho)."""
    from facetwin.geometry.rotation import head_yaw
    from facetwin.losses.photometric import photometric_loss, photometric_mask

    preds, labels, betas, photo, verts, scales, trans, yaws = [], [], [], [], [], [], [], []
    was = encoder.training
    encoder.eval()
    dev = next(encoder.parameters()).device
    for s in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(s, min(len(dataset), s + batch_size))]
        batch = {k: torch.stack([it[k] for it in items]).to(dev) for k in ("image", "landmarks", "skin")}
        inputs, geo = stage.forward(encoder, batch, with_render=render)
        preds.append(stage.coarse.image_landmarks(geo, contour).float().cpu().numpy())
        labels.append(batch["landmarks"].float().cpu().numpy())
        betas.append(geo.params.shape.float().cpu().numpy())
        verts.append(geo.vertices.float().cpu().numpy())
        scales.append(geo.scale_px.float().cpu().numpy())
        trans.append(geo.translation_px.float().cpu().numpy())
        yaws.append(np.degrees(head_yaw(geo.params.pose.float()).cpu().numpy()))
        if render and inputs.render is not None:
            mask = photometric_mask(inputs.render_mask, inputs.skin_mask)
            photo += [float(photometric_loss(inputs.render[i:i + 1], inputs.image[i:i + 1], mask[i:i + 1]))
                      for i in range(len(items))]
    encoder.train(was)
    out = {"landmarks": np.concatenate(preds), "labels": np.concatenate(labels), "beta": np.concatenate(betas),
           "vertices": np.concatenate(verts), "scale_px": np.concatenate(scales), "translation_px": np.concatenate(trans),
           "yaw_deg": np.concatenate(yaws)}
    if photo:
        out["photometric"] = np.asarray(photo)
    return out


class PersonStage(CoarseStage):
    name = "person"

    def __init__(self, cfg: CoarseConfig, settings: PersonSettings, train_set: Dataset, val_set: Dataset | None = None,
                 identity_set: Dataset | None = None, deadline: float | None = None, head_model=None, progress: bool = True):
        if settings.shared_beta:
            cfg.loss.shape_consistency = 0.0  # one β for every frame satisfies L_sc exactly
        super().__init__(cfg, dataset=train_set, head_model=head_model)
        self.settings = settings
        self.val_set = val_set
        self.identity_set = identity_set if identity_set is not None else train_set
        self.deadline = deadline
        self.progress = progress
        self.best_state: dict | None = None
        self.best_val = math.inf
        self.best_step = 0
        self.bad_evals = 0
        self.stop_reason = "steps"
        self._stop = False
        self._bar = None
        self._per_frame = False  # True: reconstruct with per-frame β even where the encoder has the person's

    # -- set-up ----------------------------------------------------------------------------
    def setup(self, info) -> None:
        super().setup(info)  # the base encoder, loaded from cfg.model.init_checkpoint (a model file)
        self.info = info
        self.person_params = prepare_encoder(self.model, self.settings.adapter_width)
        self.n_person_parameters = sum(p.numel() for p in self.person_params)
        if self.settings.shared_beta:
            # on the encoder, so the engine's optimiser, checkpoints and resume carry it
            start = torch.from_numpy(predict(self, self.model, self.identity_set)["beta"].mean(0))
            self.model.register_buffer(PERSON_BETA + "_start", start.clone())
            self.model.register_parameter(PERSON_BETA, torch.nn.Parameter(start.clone()))
            self.n_person_parameters += start.numel()
        self.started = time.time()
        if info.is_main and self.progress:
            from tqdm import tqdm

            total = max(1, int(round(self.deadline - self.started))) if self.deadline else self.cfg.run.steps
            self._bar = tqdm(total=total, unit="s" if self.deadline else "step", file=sys.stderr, dynamic_ncols=True,
                             desc="personalize", bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}"
                             " [{elapsed}<{remaining}{postfix}]")

    def parameter_groups(self, model, optim):
        trained = [p for p in model.parameters() if p.requires_grad]  # one group: no head_lr_scale here
        beta = getattr(getattr(model, "module", model), PERSON_BETA, None)
        if beta is None or self.settings.beta_lr_scale == 1.0:
            return [{"params": trained}]
        rest = [p for p in trained if p is not beta]
        return [{"params": rest}, {"params": [beta], "lr": optim.lr * self.settings.beta_lr_scale}]

    def shared_shape(self, encoder):
        """The person's trained β when ``encoder`` is this run's (a base or loaded encoder has none)."""
        return None if self._per_frame else getattr(encoder, PERSON_BETA, None)

    def shape_prior(self, encoder, own, params):
        beta = self.shared_shape(encoder)
        if beta is None:
            return super().shape_prior(encoder, own, params)
        return (beta - getattr(encoder, PERSON_BETA + "_start")).reshape(1, -1).expand(params.shape.shape[0], -1)

    def epoch_batches(self, epoch, rng, batch_size):
        """Random batches over the person's frames; a set smaller than a batch is repeated to fill it."""
        n = len(self.dataset)
        reps = max(1, math.ceil(batch_size / n))
        order = np.concatenate([rng.permutation(n) for _ in range(reps)])
        return [order[i * batch_size:(i + 1) * batch_size].tolist() for i in range(len(order) // batch_size)]

    # -- the loop's hooks ------------------------------------------------------------------
    def training_step(self, model, batch, step):
        total, logs = super().training_step(model, batch, step)
        encoder = getattr(model, "module", model)
        if self.identity_loss is not None and self.cfg.render.enabled and step >= self.cfg.render.landmark_only_steps:
            for name, w, live in (("identity_beta", self.settings.identity_on_beta, ("shape",)),
                                  ("identity_appearance", self.settings.identity_on_appearance, ("albedo", "light"))):
                if w > 0 and (live != ("shape",) or self.shared_shape(encoder) is not None):
                    term = w * self.identity_through(model, batch, live)
                    total = total + term
                    logs[name] = float(term.detach())
        if self._bar is not None:
            now = time.time()
            if self.deadline:
                self._bar.n = min(self._bar.total, int(now - self.started))
            else:
                self._bar.n = step + 1
            post = {"step": step + 1, "loss": f"{float(total.detach()):.4g}"}
            if math.isfinite(self.best_val):
                post["val_nme"] = f"{self.best_val:.4f}"
            self._bar.set_postfix(post, refresh=True)
        return total, logs

    def identity_through(self, model, batch, live: tuple[str, ...] = ("shape",), n: int = 2) -> torch.Tensor:
        """L_id (unweighted) of the first ``n`` frames in a pass where only the encoder outputs
        named in ``live`` (fields of :class:`~facetwin.networks.coarse_encoder.CoarseParams`) carry
        a gradient. ``("shape",)``: only the person's β (and the camera re-fitted to it) learns from
        it — the likeness moves the identity, not the adapters' pose or expression; ``("albedo",
        "light")``: the adapters learn it through the appearance only, so it cannot pull the
        geometry (and the landmarks) away from the photo."""
        from facetwin.losses.perceptual import composite_render
        from facetwin.networks.coarse_encoder import CoarseParams

        sub = {k: v[:n] if torch.is_tensor(v) else v for k, v in batch.items()}
        images = sub["image"].float()
        encoder = getattr(model, "module", model)
        with self.autocast(), torch.set_grad_enabled(live != ("shape",)):
            own = model(self.coarse.encoder_input(images))
        own = CoarseParams(**{k: (v if k in live else v.detach()).float() for k, v in own.as_dict().items()})
        shape = self.shared_shape(encoder)
        if shape is not None and "shape" not in live:
            shape = shape.detach()
        params = self.coarse.complete(own, images, encoder=encoder, shape=shape)
        x, _ = self.coarse.loss_inputs(params, sub, self.weights, with_render=True)
        paste = x.perceptual_mask if x.perceptual_mask is not None else x.render_mask
        return self.identity_loss(composite_render(x.render, x.image, paste), x.image, x.gt_landmarks)

    def should_stop(self, step: int) -> bool:
        """Budget spent or early-stopped; the same answer on every process."""
        stop = self._stop or (self.deadline is not None and time.time() >= self.deadline)
        if stop and not self._stop:
            self.stop_reason = "time budget"
        if getattr(self, "info", None) is not None and self.info.distributed:
            import torch.distributed as dist

            flag = torch.tensor([1.0 if stop else 0.0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item() > 0)
        return stop

    def evaluate(self, model, step):
        """Held-out NME; keeps the best person parameters; decides early stopping."""
        if self.val_set is None or len(self.val_set) == 0:
            self.best_state, self.best_step = self._state(), step
            return None
        from facetwin.evaluation.nme import per_image_nme

        out = predict(self, self.model, self.val_set, contour=self.settings.contour)
        val = float(per_image_nme(out["landmarks"], out["labels"])["overall"].mean())
        if val < self.best_val * (1 - self.settings.min_delta) or self.best_state is None:
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        if val < self.best_val:
            self.best_val, self.best_step = val, step
            self.best_state = self._state()
        if self.bad_evals >= self.settings.patience:
            self._stop, self.stop_reason = True, f"early stop (no held-out gain in {self.bad_evals} evaluations)"
        return {"val_nme": val, "best_val_nme": self.best_val}

    # -- results -------------------------------------------------------------------------
    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _state(self) -> dict[str, torch.Tensor]:
        """The person parameters and, when trained, the person's β (detached copies)."""
        state = person_state(self.model)
        if self.shared_shape(self.model) is not None:
            state[PERSON_BETA] = self.shared_shape(self.model).detach().clone()
        return state

    def use_best(self) -> None:
        """Load the best person parameters seen (by held-out NME) into the encoder."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state, strict=False)

    def identity(self) -> dict:
        """The person's β: mean and spread over its frames (no augmentation), current parameters
        (cached: the checkpoint's export and the final person file need it for the same weights)."""
        from facetwin.evaluation.person import neutral_rms_mm

        shared = self.shared_shape(self.model)
        version = tuple(float(p.detach().double().sum()) for p in self.person_params + ([shared] if shared is not None else []))
        if getattr(self, "_identity", (None, None))[0] == version:
            return self._identity[1]
        self._per_frame = True  # the spread: the adapted encoder's own per-frame β
        try:
            b = predict(self, self.model, self.identity_set)["beta"]
        finally:
            self._per_frame = False
        mean = shared.detach().float().clone() if shared is not None else torch.from_numpy(b.mean(0))
        ident = {"beta_mean": mean, "beta_std": torch.from_numpy(b.std(0)),
                 "neutral_rms_mm": neutral_rms_mm(self.coarse.head_model, b), "frames": len(b)}
        self._identity = (version, ident)
        return ident

    def export(self, model, out_dir, step, config):
        """The person file of the current parameters (``<run>/export/person.facetwin``) at every
        checkpoint, so an interrupted run still leaves a usable person file."""
        base = Path(self.cfg.model.init_checkpoint)
        ident = self.identity()
        meta = person_meta(base, self.coarse.head_model.name, self.settings.adapter_width, config, step=step,
                           seconds=time.time() - self.started, frames={"train": len(self.dataset), "held_out": len(self.val_set or [])},
                           neutral_rms_mm=ident["neutral_rms_mm"])
        return write_person(Path(out_dir) / "person.facetwin", person_state(self.model), ident["beta_mean"], ident["beta_std"], meta)


def person_meta(base_path: Path, head_model: str, adapter_width: int, config: dict, step: int, seconds: float,
                frames: dict, neutral_rms_mm: float | None = None, command: str | None = None, extra: dict | None = None) -> dict:
    """The person file's header (see :mod:`facetwin.models.person`)."""
    from facetwin.models.files import file_sha256

    return {"base_sha256": file_sha256(base_path), "base_checkpoint": Path(base_path).name, "head_model": head_model,
            "adapter_width": int(adapter_width), "frames": frames, "steps": int(step), "training_seconds": round(float(seconds), 2),
            "neutral_rms_mm": neutral_rms_mm, "config": config, "command": command if command is not None else (config or {}).get("command", ""),
            **(extra or {})}
