"""Typed training configuration: dataclasses loaded from YAML, with ``key.sub=value`` overrides.

Every stage shares :class:`OptimConfig` and :class:`RunConfig`; a stage adds its own sections
(:class:`CoarseConfig` for the coarse stage). Unknown keys are an error (typos must not be
silently ignored).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from facetwin.errors import FacetwinError
from facetwin.paths import PACKAGE_DIR

CONFIG_DIR = PACKAGE_DIR / "configs"


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


@dataclass
class RunConfig:
    out_dir: str = "runs/coarse"
    steps: int = 20000
    batch_size: int = 16          # per process
    seed: int = 0
    threads: int = 0              # torch threads per process (0 = leave torch's default)
    bf16: bool = False            # bf16 autocast of the network (CPU: avx512_bf16; GPU: any)
    checkpoint_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    image_every: int = 500        # image grids (0 = off)
    workers: int = 2              # DataLoader workers per process
    eval_every: int = 0           # stage-defined evaluation (0 = off)
    device: str = "auto"          # auto | cpu | cuda


@dataclass
class CoarseModelConfig:
    size: str = "tiny"            # tiny | small | base
    image_size: int = 128
    hidden: int = 512
    head_model: str = "open"
    n_shape: int = 0              # predicted identity components (0 = all of the head model)
    n_expr: int = 0               # predicted expression components (0 = all)
    face_fraction: float = 0.625  # template landmark width / crop width at zero camera output
    centre_y: float = 0.57        # template landmark centre height / crop height at zero output
    predict_jaw: bool = True
    head_init_std: float = 1e-3   # std of the last layer's initial weights (small: start at the mean face)
    pretrained: str = ""          # MAE/timm/facetwin ViT weights to start from ('' = scratch)
    init_checkpoint: str = ""     # a facetwin coarse checkpoint to start from (fine-tuning)


@dataclass
class CoarseDataConfig:
    root: str = "prepared"  # `facetwin prepare` output (relative to the working directory, or absolute)
    crop_size: int = 128          # images are resized to this for losses and rendering
    preload: bool = True          # keep all crops in memory (uint8)
    identity_batches: bool = True # batches hold several images per identity (shape consistency)
    images_per_identity: int = 2
    augment: bool = True
    fill_border: float = 0.8      # probability of filling a crop's black padding with another crop's background
    oversample: dict[str, float] = field(default_factory=dict)  # key prefix -> repeats per epoch
    oversample_turns: float = 1.0 # repeats per epoch of crops whose labels show a large head turn (|nose asymmetry| > 0.25)
    pose_augment: dict[str, float] = field(default_factory=dict)  # Augmenter large-pose options (wide_roll, tilt, tilt_degrees, ...)


@dataclass
class CoarseEvalConfig:
    helen: str = ""               # folder with images + .pts (e.g. ../shared/data/eval/helen-test); '' = off
    limit: int = 0                # only the first N images (0 = all)
    likeness: str = ""            # folder of person sub-folders (e.g. data:identities/eval); '' = off


@dataclass
class CoarseConfig:
    model: CoarseModelConfig = field(default_factory=CoarseModelConfig)
    data: CoarseDataConfig = field(default_factory=CoarseDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    loss: dict[str, Any] = field(default_factory=dict)  # CoarseLossWeights fields
    render: bool = True           # photometric term needs the render
    render_size: int = 0          # photometric/perceptual terms at this resolution (0 = crop size)
    identity_images: int = 0      # L_id on only the first N images of a batch (0 = all): it is costly on CPU
    landmark_only_steps: int = 0  # DECA-style start: no render (photometric / identity) before this step
    eval: CoarseEvalConfig = field(default_factory=CoarseEvalConfig)


def _coerce(value, hint):
    origin = getattr(hint, "__origin__", None)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    if hint in (float, int) and not isinstance(value, bool):
        try:  # YAML 1.1 reads "1e-4" as a string
            return hint(float(value)) if hint is int and isinstance(value, str) else hint(value)
        except (TypeError, ValueError):
            raise FacetwinError(f"config value {value!r} is not a {hint.__name__}") from None
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def from_dict(cls, data: dict | None):
    """Build dataclass ``cls`` from a (nested) dict, rejecting unknown keys."""
    data = data or {}
    if not isinstance(data, dict):
        raise FacetwinError(f"config section for {cls.__name__} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise FacetwinError(f"unknown config key(s) in {cls.__name__}: {', '.join(sorted(unknown))}")
    return cls(**{k: _coerce(v, hints[k]) for k, v in data.items()})


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
    raise FacetwinError(f"config not found: {path} (shipped: {', '.join(sorted(c.stem for c in CONFIG_DIR.glob('*.yaml')))})")


def load_yaml(path: str | Path) -> dict:
    path = resolve_config_path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FacetwinError(f"cannot parse config {path}: {str(exc).splitlines()[0]}") from None
    base = data.pop("base", None)  # `base: coarse.yaml` inherits another config
    if base:
        data = merge(load_yaml(path.parent / base if (path.parent / base).is_file() else base), data)
    return data


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``["optim.lr=1e-4", "run.bf16=true", "loss.w_sil=2"]`` → nested dict updates (YAML values)."""
    data = dict(data)
    for item in overrides or []:
        if "=" not in item:
            raise FacetwinError(f"override '{item}' is not key=value (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise FacetwinError(f"override '{item}': {part} is not a section")
        node[parts[-1]] = value
    return data


def load_config(cls, path: str | Path | None, overrides: list[str] | None = None):
    data = load_yaml(path) if path else {}
    return from_dict(cls, apply_overrides(data, overrides or []))
