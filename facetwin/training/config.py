"""Typed training configuration: dataclasses loaded from YAML, with ``key.sub=value`` overrides.

Every stage shares :class:`OptimConfig` and :class:`RunConfig`; a stage's own config class sits
beside the stage (``CoarseConfig`` in ``coarse_stage.py``, ``VitPretrainConfig`` in
``vit_pretrain_stage.py``), built from section classes of the layers below (the model's
``CoarseModelConfig``, the reader's ``PreparedDataConfig``, the losses' ``CoarseLossWeights``).

Everything is checked when the file is loaded, before anything runs: an unknown key, a value of
the wrong type (``bf16: maybe``, ``steps: ten``), a value out of range (batch size 0, a negative
step count, a NaN learning rate, ``device: cuda`` without CUDA) or a ``base:`` cycle is a
:class:`FacetwinError` naming the key — one line on stderr and exit 2 from the CLI.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import get_type_hints

import yaml

from facetwin.errors import FacetwinError
from facetwin.paths import PACKAGE_DIR

CONFIG_DIR = PACKAGE_DIR / "configs"


class ConfigError(FacetwinError):
    """A configuration mistake (one line: which key, what is wrong)."""


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 200
    schedule: str = "cosine"      # "cosine" | "constant"
    min_lr_ratio: float = 0.05    # final lr = lr * min_lr_ratio (cosine)
    grad_clip: float = 1.0        # max global grad norm (0 = off)
    head_lr_scale: float = 1.0    # lr multiplier of non-backbone parameters

    def __post_init__(self):
        _at_least("optim.lr", self.lr, 0)  # 0: a frozen run (e.g. to check a warm restart)
        _at_least("optim.weight_decay", self.weight_decay, 0)
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        _at_least("optim.warmup_steps", self.warmup_steps, 0)
        _choice("optim.schedule", self.schedule, ("cosine", "constant"))
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        _at_least("optim.grad_clip", self.grad_clip, 0)
        _positive("optim.head_lr_scale", self.head_lr_scale)


@dataclass
class RunConfig:
    out_dir: str = "runs/coarse"
    steps: int = 20000
    batch_size: int = 16          # per process
    seed: int = 0
    threads: int = 0              # torch threads per process (0 = leave torch's default)
    bf16: bool = False            # bf16 autocast of the network where the device has it in hardware (CPU: avx512_bf16 / AMX), else float32
    checkpoint_every: int = 500   # resumable training state (checkpoints/) + model file (export/) every N steps
    keep_last: int = 3            # checkpoints kept (0 = all)
    log_every: int = 10
    image_every: int = 500        # training pictures (0 = off)
    workers: int = 2              # DataLoader workers per process
    eval_every: int = 0           # stage-defined evaluation (0 = off)
    device: str = "auto"          # auto | cpu | cuda
    find_unused_parameters: bool = False  # DDP: allow parameters without a gradient in a step (e.g. frozen branches)

    def __post_init__(self):
        if not self.out_dir:
            raise ConfigError("run.out_dir must not be empty")
        _at_least("run.steps", self.steps, 0)
        _at_least("run.batch_size", self.batch_size, 1)
        for name in ("threads", "checkpoint_every", "keep_last", "image_every", "workers", "eval_every"):
            _at_least(f"run.{name}", getattr(self, name), 0)
        _at_least("run.log_every", self.log_every, 1)
        _choice("run.device", self.device, ("auto", "cpu", "cuda"))
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("run.device=cuda but no CUDA device is available (use run.device=auto or cpu)")


# -- checks used by every config class ----------------------------------------------------------

def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value}")


def _at_least(name: str, value: float, low: float) -> None:
    if not (math.isfinite(value) and value >= low):
        raise ConfigError(f"{name} must be >= {low}, got {value}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


# -- building a dataclass from YAML data ----------------------------------------------------------

def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})" if not isinstance(value, (dict, list)) else type(value).__name__


def _coerce(value, hint, key: str):
    """``value`` as type ``hint`` or a ConfigError naming ``key``. No silent conversions: a bool
    is not a number, a number is not a string, 1.5 is not an int."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, bool) and "enabled" in {f.name for f in dataclasses.fields(hint)}:
            value = {"enabled": value}  # `render: false` is short for `render: {enabled: false}`
        return from_dict(hint, value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {_describe(value)}")
    if hint in (int, float):
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {_describe(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
        if hint is int:
            if float(value) != int(value):
                raise ConfigError(f"{key} must be a whole number, got {value}")
            return int(value)
        return float(value)
    if hint is str:
        if value is None:  # `key:` / `--set key=` (empty)
            return ""
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {_describe(value)}")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {_describe(value)}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        kt, vt = typing.get_args(hint)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {_describe(value)}")
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(hint):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: unexpected value {_describe(value)}")
    return value


def from_dict(cls, data: dict | None, path: str = ""):
    """Build dataclass ``cls`` from a (nested) dict: unknown keys, wrong types and (through the
    classes' ``__post_init__``) wrong values are a :class:`ConfigError` naming the key."""
    data = {} if data is None else data
    where = path or "the config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys, got {_describe(data)}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        prefix = f"{path}." if path else ""
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known in {where}: {', '.join(names)})")
    values = {k: _coerce(v, hints[k], f"{path}.{k}" if path else k) for k, v in data.items()}
    try:
        return cls(**values)
    except (FacetwinError, TypeError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(msg if isinstance(exc, FacetwinError) or (path and msg.startswith(path + ".")) else f"{where}: {msg}") from None


def to_dict(cfg) -> dict:
    def conv(v):
        if isinstance(v, tuple):
            return list(v)
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in dataclasses.asdict(cfg).items()}


def resolve_config_path(path: str | Path) -> Path:
    """A file path, or the name of a shipped config (``coarse``, ``coarse_smoke.yaml``)."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / p.name, CONFIG_DIR / f"{p.name}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"config not found: {path} (shipped: {', '.join(shipped_configs())})")


def shipped_configs() -> list[str]:
    return sorted(c.stem for c in CONFIG_DIR.glob("*.yaml"))


def load_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A config file as a dict, with ``base: other.yaml`` inheritance (a cycle is an error)."""
    path = resolve_config_path(path)
    real = path.resolve()
    if real in _chain:
        cycle = " → ".join(p.name for p in _chain + (real,))
        raise ConfigError(f"config {path.name}: 'base:' makes a cycle ({cycle})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse config {path}: {str(exc).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {str(exc).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path.name} must be a mapping of sections (model:, data:, run:, ...), got a {type(data).__name__}")
    base = data.pop("base", None)  # `base: coarse.yaml` inherits another config
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"config {path.name}: base must be a config file name, got {_describe(base)}")
        target = path.parent / base if (path.parent / base).is_file() else base
        data = merge(load_yaml(target, _chain + (real,)), data)
    return data


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``["optim.lr=1e-4", "run.bf16=true", "loss.silhouette=2"]`` → nested dict updates (YAML values)."""
    data = dict(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override '{item}': empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override '{item}': {'.'.join(parts[:i + 1])} is not a section")
            else:
                child = node[part] = dict(child)
            node = child
        node[parts[-1]] = value
    return data


def load_config(cls, path: str | Path | None, overrides: list[str] | None = None):
    """The typed config ``cls`` of a YAML file (or shipped name) with ``key=value`` overrides."""
    data = load_yaml(path) if path else {}
    return from_dict(cls, apply_overrides(data, overrides or []))
