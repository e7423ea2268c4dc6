"""Training checkpoints: the resumable training state (atomic, keep last K, exact resume).

A *checkpoint* is only this resumable state; the exported network (a *model file*, what
inference and later stages load) is written and read by :mod:`facetwin.models.files`.

A training checkpoint ``<out>/checkpoints/step_0000500.pt`` holds the model and optimizer
state, the LR scheduler, the step, the data-sampler position and the RNG states of every
process (torch, numpy, python), so that resuming reproduces the uninterrupted run.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from facetwin.errors import FacetwinError

CKPT_RE = re.compile(r"step_(\d+)\.pt$")


def atomic_torch_save(obj, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename (never a half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = CKPT_RE.search(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    found = list_checkpoints(folder)
    if keep_last > 0:
        for _, p in found[:-keep_last]:
            p.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FacetwinError(f"checkpoint not found: {path}")
    try:
        # Our own checkpoints hold numpy/python RNG states (not plain tensors).
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise FacetwinError(f"cannot read checkpoint {path.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
