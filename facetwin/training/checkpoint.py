"""Training checkpoints: the resumable training state (atomic, keep last K, exact resume).

A *checkpoint* is only this resumable state; the exported network (a *model file*, what
inference and later stages load) is written and read by :mod:`facetwin.models.files`.

A training checkpoint ``<out>/checkpoints/step_0000500.safetensors`` holds the model and
optimizer state, the LR scheduler, the step, the data-sampler position and the RNG states of
every process (torch, numpy, python), so that resuming reproduces the uninterrupted run.

The format cannot run code: the tensors are a safetensors file and everything else (numbers,
strings, the nesting of the state dicts) is JSON in its header (key ``facetwin-train-state``),
rebuilt by :func:`decode_state` from plain types only. safetensors checks the header's offsets
against the file size before reading, so a small file cannot make the loader allocate much.
Pickled ``step_*.pt`` files of older versions are refused, never unpickled.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from facetwin.errors import FacetwinError

FORMAT = "facetwin-train-state/1"
STATE_KEY = "facetwin-train-state"
CKPT_RE = re.compile(r"step_(\d+)\.(safetensors|pt)$")
# Temporaries of checkpoint writes killed by earlier versions (``.step_0000500.pt.tmp1234``).
LEGACY_TMP_GLOB = ".step_*.tmp*"


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}.safetensors"


# -- plain encoding of a nested training state ------------------------------------------------
# JSON keeps dicts with string keys, lists, str, int, float, bool and None; everything else is
# tagged: {"__tensor__": name}, {"__tuple__": [...]}, {"__items__": [[key, value], ...]} (dicts
# with non-string keys, e.g. the optimizer's parameter indices), {"__ndarray__": [...], "dtype"}.
_TAGS = ("__tensor__", "__tuple__", "__items__", "__ndarray__", "__float__")


def encode_state(obj, tensors: dict[str, torch.Tensor], prefix: str = "t"):
    """``obj`` as JSON-able plain data; its tensors are moved into ``tensors`` (name → tensor)."""
    if torch.is_tensor(obj):
        name = f"{prefix}{len(tensors)}"
        tensors[name] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):  # JSON has no NaN/Inf: tag the non-finite ones
        return obj if np.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return encode_state(obj.item(), tensors, prefix)
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, tensors, prefix) for v in obj]}
    if isinstance(obj, list):
        return [encode_state(v, tensors, prefix) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in obj):
            return {k: encode_state(v, tensors, prefix) for k, v in obj.items()}
        return {"__items__": [[encode_state(k, tensors, prefix), encode_state(v, tensors, prefix)] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} in a training checkpoint")


_NP_DTYPES = {"uint32", "int64", "int32", "uint8", "float64", "float32", "bool"}


def decode_state(obj, tensors: dict[str, torch.Tensor]):
    """Inverse of :func:`encode_state`; builds only plain types, tensors and numpy arrays."""
    if isinstance(obj, list):
        return [decode_state(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__tuple__" in obj:
        return tuple(decode_state(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_hashable(decode_state(k, tensors)): decode_state(v, tensors) for k, v in obj["__items__"]}
    if "__float__" in obj:
        if obj["__float__"] not in ("nan", "inf", "-inf"):
            raise ValueError("bad float tag")
        return float(obj["__float__"])
    if "__ndarray__" in obj:
        if obj.get("dtype") not in _NP_DTYPES:
            raise ValueError(f"unexpected array type {obj.get('dtype')!r}")
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"]).reshape(obj["shape"])
    return {k: decode_state(v, tensors) for k, v in obj.items()}


def _hashable(key):
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    return key


def save_checkpoint(state: dict, path: Path) -> Path:
    """Write a training state atomically (temporary beside ``path``, fsync, rename)."""
    from safetensors.torch import save

    from facetwin.outputs import atomic_write

    tensors: dict[str, torch.Tensor] = {}
    plain = encode_state(state, tensors)
    header = {"format": FORMAT, "state": plain}
    blob = save(tensors, metadata={STATE_KEY: json.dumps(header, allow_nan=False)})
    with atomic_write(path, "wb") as fh:
        fh.write(blob)
    return Path(path)


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
    """(step, path) of the checkpoints in ``folder``, oldest first (legacy ``.pt`` included, so
    that resuming from one is refused with a reason instead of silently starting afresh)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = CKPT_RE.fullmatch(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), m.group(2) == "safetensors", p))
    return [(step, p) for step, _, p in sorted(found)]


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    found = list_checkpoints(folder)
    if keep_last > 0:
        for _, p in found[:-keep_last]:
            p.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    """The training state saved by :func:`save_checkpoint`; FacetwinError for anything else."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        raise FacetwinError(f"cannot resume from {path}: it is a folder (pass a step_*.safetensors file or 'auto')")
    if not path.is_file():
        raise FacetwinError(f"checkpoint not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        legacy = head[:2] == b"PK" or head[:1] == b"\x80"
        why = ("a pickled checkpoint of an older facetwin (not loaded: pickles can run code; convert your own "
               "with scripts/convert_checkpoint.py)") if legacy else "not a safetensors file"
        raise FacetwinError(f"cannot resume from {path}: {why}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = json.loads((fh.metadata() or {}).get(STATE_KEY) or "null")
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise FacetwinError(f"cannot resume from {path}: not a facetwin training checkpoint")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        state = decode_state(header["state"], tensors)
    except FacetwinError:
        raise
    except Exception as exc:  # damaged header, truncated data, foreign layout
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FacetwinError(f"cannot resume from {path}: damaged checkpoint ({msg})") from None
    missing = [k for k in ("model", "optimizer", "scheduler", "step", "epoch", "batch_in_epoch", "rng") if k not in state]
    if missing:
        raise FacetwinError(f"cannot resume from {path}: the checkpoint lacks {', '.join(missing)}")
    return state

