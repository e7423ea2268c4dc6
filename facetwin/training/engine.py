"""A generic training loop that every stage uses (coarse now; detail and person-specific later).

A :class:`Stage` supplies the trainable module, the dataset and the batches of an epoch, the
losses of a batch, image grids, an optional evaluation and the export. The :class:`Trainer`
does the rest: torchrun/DDP (gloo on CPU, NCCL on GPU, one process otherwise), optional bf16
autocast, AdamW with warmup + cosine LR, gradient clipping, JSONL metrics, a tqdm bar on
rank 0, periodic image grids, atomic checkpoints every N steps and exact resume.

Exact resume: every sample is loaded under its own seed (derived from the run seed, the epoch
and its position), so augmentation does not depend on which DataLoader worker ran it or on
where the run was interrupted; the sampler position, optimizer, scheduler and RNG states go
into the checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from facetwin.errors import FacetwinError
from facetwin.outputs import dumps_json, ensure_dir, write_image
from facetwin.training import checkpoint as ckpt
from facetwin.training import run_folder
from facetwin.training import distributed as ddp
from facetwin.training.config import OptimConfig, RunConfig


class Stage:
    """What one training stage supplies to :class:`Trainer`. Override the methods.

    A stage registered in :mod:`facetwin.training.stages` also names its typed config
    (``config_class``, defined beside the stage), its shipped config (``default_config``), a
    one-line ``help`` and :meth:`summary` (what ``facetwin train <stage>`` prints).
    """

    name = "stage"
    config_class: type | None = None
    default_config = ""
    help = ""

    @staticmethod
    def summary(summary: dict) -> dict:
        """The CLI's result from :meth:`Trainer.train`'s summary."""
        return {"out_dir": summary["out_dir"], "steps": summary["step"], "loss": summary["last"].get("loss"),
                "images_per_s": summary["images_per_s"], "precision": summary.get("precision")}

    def setup(self, info: ddp.DistInfo) -> None:
        """Build ``self.model`` (the trainable nn.Module, on ``info.device``) and ``self.dataset``."""
        raise NotImplementedError

    model: nn.Module
    dataset: Dataset
    # Set by the Trainer: a context manager factory for the network's autocast.
    autocast = staticmethod(contextlib.nullcontext)

    def parameter_groups(self, model: nn.Module, optim: OptimConfig) -> list[dict]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def epoch_batches(self, epoch: int, rng: np.random.Generator, batch_size: int) -> list[list[int]]:
        """Batches (lists of dataset indices, ``batch_size`` each) of one epoch, for all processes."""
        order = rng.permutation(len(self.dataset))
        n = len(order) // batch_size
        return [order[i * batch_size:(i + 1) * batch_size].tolist() for i in range(n)]

    def collate(self, samples: list) -> Any:
        return torch.utils.data.default_collate(samples)

    def training_step(self, model: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (scalar) and scalars to log."""
        raise NotImplementedError

    def batch_size_of(self, batch: Any) -> int:
        return int(batch["image"].shape[0]) if isinstance(batch, dict) and "image" in batch else 0

    def visuals(self, model: nn.Module, batch: Any) -> np.ndarray | None:
        """(H, W, 3) uint8 image grid for this batch, or None."""
        return None

    def evaluate(self, model: nn.Module, step: int) -> dict[str, float] | None:
        return None

    def should_stop(self, step: int) -> bool:
        """True to end the run now (with a checkpoint), e.g. a time budget or early stopping;
        must give the same answer on every process."""
        return False

    def export(self, model: nn.Module, out_dir: Path, step: int, config: dict) -> Path | None:
        return None


class SeededDataset(Dataset):
    """Loads ``(index, seed)`` keys with the python/numpy/torch RNGs seeded by ``seed``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        random.seed(seed)
        np.random.seed(seed % (2 ** 32))
        torch.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


def _process_state() -> dict:
    return {"threads": torch.get_num_threads(), "rng": ckpt.rng_state()}


def _restore_process_state(state: dict) -> None:
    if torch.get_num_threads() != state["threads"]:
        torch.set_num_threads(state["threads"])
    ckpt.set_rng_state(state["rng"])


def sample_seed(run_seed: int, epoch: int, batch: int, pos: int) -> int:
    return int(np.random.SeedSequence([run_seed, epoch, batch, pos]).generate_state(1, np.uint64)[0] % (2 ** 62))


class Trainer:
    def __init__(self, stage: Stage, run: RunConfig, optim: OptimConfig, config_dict: dict | None = None,
                 resume: str | None = None, quiet: bool = False, stop_at: int | None = None, overwrite: bool = False):
        self.stage = stage
        self.run = run
        self.optim_cfg = optim
        self.config_dict = config_dict or {}
        self.resume = resume
        self.quiet = quiet
        self.stop_at = stop_at  # stop (with a checkpoint) at this step, as if interrupted
        self.overwrite = overwrite  # replace a run already in run.out_dir (else --resume is needed)
        self.out = Path(run.out_dir)
        self.history: list[dict] = []  # logged records (rank 0), also written to metrics.jsonl
        self._n_prior = 0  # records in history from before a resume
        self._interrupt = run_folder.InterruptFlag()  # Ctrl-C: finish the step, checkpoint, stop
        self._bar = None
        self._bf16 = False  # run.bf16 where the device has it (set up by setup())

    # -- set-up ----------------------------------------------------------------------------
    def _autocast(self):
        if not self._bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.info.device.type, dtype=torch.bfloat16)

    def _lr_lambda(self, step: int) -> float:
        o = self.optim_cfg
        if o.warmup_steps > 0 and step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        span = max(1, self.run.steps - o.warmup_steps)
        progress = min(1.0, (step - o.warmup_steps) / span)
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def setup(self) -> None:
        run_folder.check(self.out, self.resume, self.overwrite)
        self.info = ddp.setup(self.run.device)
        if self.info.is_main:
            run_folder.prepare(self.out, self.ckpt_dir, self.overwrite and not self.resume)
        if self.run.threads > 0:
            torch.set_num_threads(self.run.threads)  # restored by train() (library calls leave no trace)
        seed = self.run.seed + 1000 * self.info.rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(self.run.seed)  # same initial weights on every rank
        # run.bf16 only where the device has bf16 in hardware: elsewhere autocast is many times slower, not
        # faster, so the run is float32 (the summary's ``precision`` says which ran)
        self._bf16 = bool(self.run.bf16) and ddp.native_bf16(self.info.device)
        self.stage.autocast = self._autocast
        self.stage.setup(self.info)
        torch.manual_seed(seed)
        model = self.stage.model
        groups = self.stage.parameter_groups(model, self.optim_cfg)
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=self.optim_cfg.lr, betas=tuple(self.optim_cfg.betas),
                                           weight_decay=self.optim_cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)
        if self.info.distributed:
            kwargs = {"device_ids": [self.info.device.index]} if self.info.device.type == "cuda" else {}
            with warnings.catch_warnings():  # broadcast_buffers is deprecated in newer torch; same meaning
                warnings.simplefilter("ignore", FutureWarning)
                self.wrapped = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False,
                                                                   find_unused_parameters=self.run.find_unused_parameters, **kwargs)
        else:
            self.wrapped = model
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self._last_saved = -1
        if self.resume:
            self._load(self.resume)
        if self.info.is_main:  # records after the resumed step are re-made: drop the old ones
            self.history = run_folder.truncate_metrics(self.out / "metrics.jsonl", self.step)
            self._n_prior = len(self.history)
        ddp.barrier(self.info)

    # -- checkpoints -----------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def _load(self, resume: str) -> None:
        path = ckpt.latest_checkpoint(self.ckpt_dir) if resume == "auto" else Path(resume)
        if path is None:
            return  # nothing to resume: fresh start
        state = ckpt.load_checkpoint(path)
        self.stage.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        rngs = state["rng"]
        if len(rngs) == self.info.world_size:
            ckpt.set_rng_state(rngs[self.info.rank])
        if self.info.is_main and not self.quiet:
            print(f"resumed from {path} at step {self.step}", file=sys.stderr)

    def save(self) -> Path | None:
        rng = ckpt.rng_state()
        if self.info.distributed:
            gathered = [None] * self.info.world_size
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        path = None
        if self.info.is_main:
            state = {
                "model": self.stage.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "rng": gathered,
                "config": self.config_dict,
                "stage": self.stage.name,
                "world_size": self.info.world_size,
            }
            path = self.ckpt_dir / ckpt.checkpoint_name(self.step)
            self._last_saved = self.step
            ckpt.save_checkpoint(state, path)
            ckpt.prune_checkpoints(self.ckpt_dir, self.run.keep_last)
            self.stage.export(self.stage.model, self.out / "export", self.step, self.config_dict)
        self._last_saved = self.step
        ddp.barrier(self.info)
        return path

    # -- data ------------------------------------------------------------------------------
    def _epoch_loader(self) -> DataLoader:
        rng = np.random.default_rng([self.run.seed, self.epoch])
        batches = self.stage.epoch_batches(self.epoch, rng, self.run.batch_size)
        world = self.info.world_size
        n = (len(batches) // world) * world
        if n == 0:
            raise FacetwinError(f"dataset too small: {len(batches)} batches of {self.run.batch_size} for {world} processes")
        keyed = [[(i, sample_seed(self.run.seed, self.epoch, b, j)) for j, i in enumerate(batch)]
                 for b, batch in enumerate(batches[:n])]
        mine = keyed[self.info.rank::world][self.batch_in_epoch:]
        self._batches_this_epoch = n // world
        return DataLoader(SeededDataset(self.stage.dataset), batch_sampler=mine, num_workers=self.run.workers,
                          collate_fn=self.stage.collate, pin_memory=self.info.device.type == "cuda",
                          prefetch_factor=4 if self.run.workers > 0 else None)

    def _batches(self):
        while True:
            loader = self._epoch_loader()
            for batch in loader:
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    # -- loop ------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        self.history.append(record)
        ensure_dir(self.out)
        with open(self.out / "metrics.jsonl", "a") as fh:  # one short line per append
            fh.write(dumps_json(record) + "\n")

    def _to_device(self, batch):
        if isinstance(batch, dict):
            return {k: v.to(self.info.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        return batch

    def train(self) -> dict:
        """Run until ``run.steps``; returns a summary (last logged losses, throughput).

        Process-wide state the run sets (torch / numpy / python RNGs, the torch thread count) is
        put back as it was when this returns or raises: a library caller's own seeding and
        threads are not changed by training.
        """
        saved = _process_state()
        try:
            self.setup()
            try:
                return self._train()
            finally:
                self._interrupt.restore()
                if self._bar is not None:
                    self._bar.close()  # an error message must not land on the bar's line
                ddp.cleanup(self.info)
        finally:
            _restore_process_state(saved)

    def _train(self) -> dict:
        from tqdm import tqdm

        run, info = self.run, self.info
        bar = tqdm(total=run.steps, initial=self.step, disable=not info.is_main or self.quiet,
                   file=sys.stderr, desc=f"train {self.stage.name}", dynamic_ncols=True)
        self._bar = bar
        sums: dict[str, float] = {}
        count, images, t0 = 0, 0, time.perf_counter()
        total_images, total_time = 0, 0.0
        data_time, t_data = 0.0, time.perf_counter()
        batches = self._batches() if self.step < run.steps else iter(())
        self.wrapped.train()
        interrupt = self._interrupt.install()
        for batch in batches:
            if self.step >= run.steps or (self.stop_at is not None and self.step >= self.stop_at):
                break
            if self.step > 0 and self.stage.should_stop(self.step):
                break
            data_time += time.perf_counter() - t_data
            batch = self._to_device(batch)
            loss, logs = self.stage.training_step(self.wrapped, batch, self.step)
            if not torch.isfinite(loss):
                raise FacetwinError(f"training diverged: non-finite loss at step {self.step} "
                                    f"({', '.join(k for k, v in logs.items() if not math.isfinite(float(v))) or 'total'}); "
                                    f"lower optim.lr or check the data, then --resume auto from the last checkpoint")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.optim_cfg.grad_clip > 0:
                gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.optim_cfg.grad_clip)
                logs["grad_norm"] = float(gnorm)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self.batch_in_epoch += 1
            logs["loss"] = float(loss.detach())
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
            images += self.stage.batch_size_of(batch)
            if info.is_main and run.image_every and (self.step % run.image_every == 0 or self.step == 1):
                self._save_grid(batch)
            if self.step % run.log_every == 0 or self.step == run.steps:
                elapsed = time.perf_counter() - t0
                means = ddp.all_reduce_mean({k: v / count for k, v in sums.items()}, info)
                record = {"step": self.step, "epoch": self.epoch, "lr": self.scheduler.get_last_lr()[0], **means,
                          "images_per_s": images * info.world_size / max(elapsed, 1e-9),
                          "data_wait_frac": data_time / max(elapsed, 1e-9)}
                total_images += images * info.world_size
                total_time += elapsed
                if info.is_main:
                    self._log(record)
                    bar.set_postfix(loss=f"{record['loss']:.4g}", ips=f"{record['images_per_s']:.1f}")
                sums, count, images, data_time, t0 = {}, 0, 0, 0.0, time.perf_counter()
            if run.eval_every and self.step % run.eval_every == 0:
                self._evaluate()
            if run.checkpoint_every and self.step % run.checkpoint_every == 0:
                self.save()
            bar.update(1)
            if interrupt.requested(info):
                break  # the step is complete: stop here, before fetching the next batch
            t_data = time.perf_counter()
        bar.close()
        if interrupt.requested(info):
            interrupt.restore()
            path = self.save() if self._last_saved != self.step else self.ckpt_dir / ckpt.checkpoint_name(self.step)
            raise KeyboardInterrupt(f"interrupted at step {self.step}; checkpoint {path} written (continue with --resume auto)")
        interrupt.restore()
        if self._last_saved != self.step:
            self.save()
        if run.eval_every and self.step % run.eval_every != 0:
            self._evaluate()
        train_records = [r for r in self.history[self._n_prior:] if "loss" in r]
        last = train_records[-1] if train_records else {}
        return {"step": self.step, "out_dir": str(self.out), "last": last,
                "images_per_s": total_images / total_time if total_time else None,
                "precision": "bf16" if self._bf16 else "float32"}

    def _evaluate(self) -> None:
        if self.info.is_main:
            self.stage.model.eval()
            with torch.no_grad():
                result = self.stage.evaluate(self.stage.model, self.step)
            self.stage.model.train()
            if result:
                self._log({"step": self.step, **{f"eval/{k}": v for k, v in result.items()}})
        ddp.barrier(self.info)

    def _save_grid(self, batch) -> None:
        model = self.stage.model
        with torch.no_grad():
            grid = self.stage.visuals(model, batch)
        if grid is None:
            return
        write_image(self.out / "images" / f"step_{self.step:07d}.png", grid)
