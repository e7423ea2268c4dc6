"""Model files: the ONE place an exported network is written and read.

A *model file* is an exported network (what inference, evaluation and a later stage load), not
a *checkpoint* (the resumable training state, written by the training engine). It is one
safetensors file (float tensors stored as fp16 by default) whose header holds the metadata under
the key ``facetwin``::

    {"format": "facetwin-coarse-encoder/3",   # kind + version (FORMATS)
     "inference": {...},                      # what a model needs at inference (see below)
     ...}                                     # network description, steps, training config, command

Written as one unit: the safetensors file (tensors + header metadata) is written atomically
through :mod:`facetwin.outputs`, then the readable JSON sidecar ``<name>.json`` is written, last,
from the same metadata. The reader trusts the header only; the sidecar is for people.

Coarse encoder ``inference`` properties (read by :func:`facetwin.models.coarse.load_coarse_model`):
``input_size`` (crop side in pixels the encoder takes), ``crop`` (``scale``: crop side / landmark
box side, ``shift_up``: centre above the box centre, in box heights — the data pipeline's
``crop_square``), ``contour`` (the 68-point contour convention the model was trained with).

Person files (``NAME.facetwin``, kind :data:`PERSON`, :mod:`facetwin.models.person`) are model
files too: the person-specific parameters on top of one base model, whose SHA-256
(:func:`file_sha256`) their header names; written without a sidecar (``NAME.json`` beside a
user's file could be theirs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from facetwin.errors import FacetwinError

COARSE_ENCODER = "coarse-encoder"
VIT = "vit"
PERSON = "person"
DETAIL_UNET = "detail-unet"   # the detail teacher D_UNet (models/detail.py)
DETAIL_MAE = "detail-mae"     # the detail MAE (models/detail.py)
# kind -> current version. A newer file than this code, or a kind nobody reads, is refused.
# coarse-encoder/3: an optional identity head (identity_head.*); detail-mae/2: the convolutional decoder
FORMATS = {COARSE_ENCODER: 3, VIT: 1, PERSON: 1, DETAIL_UNET: 1, DETAIL_MAE: 2}
HEADER_KEY = "facetwin"
# how error messages name a file of a kind that is not a network (default: "(<kind>) model file")
_KIND_NAMES = {PERSON: "person file"}


def format_name(kind: str) -> str:
    """``"coarse-encoder"`` → ``"facetwin-coarse-encoder/2"`` (the current version)."""
    if kind not in FORMATS:
        raise ValueError(f"unknown model-file kind {kind!r} (known: {', '.join(FORMATS)})")
    return f"facetwin-{kind}/{FORMATS[kind]}"


def parse_format(name: str) -> tuple[str, int]:
    """``"facetwin-coarse-encoder/2"`` → ``("coarse-encoder", 2)``; ("", 0) for anything else."""
    if not isinstance(name, str) or not name.startswith("facetwin-") or "/" not in name:
        return "", 0
    kind, _, version = name[len("facetwin-"):].rpartition("/")
    try:
        return kind, int(version)
    except ValueError:
        return "", 0


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes: what a person file records of its base model."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_model_file(path: str | Path, state: dict[str, torch.Tensor], kind: str, meta: dict,
                     dtype: torch.dtype = torch.float16, exact: tuple[str, ...] = (), sidecar: bool = True) -> Path:
    """Write ``state`` (float tensors as ``dtype``, those named in ``exact`` as they are) +
    ``meta`` (its ``format`` is set from ``kind``).

    The safetensors file carries the metadata in its header; the JSON sidecar (``sidecar``) is
    written after it, from the same dict, so a crash can only leave an older sidecar next to a
    newer model, never a model file without its metadata.
    """
    from safetensors.torch import save

    from facetwin.outputs import dumps_json, write_bytes, write_text

    path = Path(path)
    meta = {"format": format_name(kind), **{k: v for k, v in meta.items() if k != "format"}}
    header = dumps_json(meta)
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() and k not in exact else v.dtype).contiguous()
               for k, v in state.items()}
    write_bytes(path, save(tensors, metadata={HEADER_KEY: header}))
    if sidecar:
        write_text(sidecar_path(path), json.dumps(json.loads(header), indent=2) + "\n")
    return path


def read_metadata(path: str | Path) -> dict:
    """The header metadata of a model file (no tensors read); FacetwinError for a foreign file."""
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(HEADER_KEY)
    except Exception as exc:
        raise FacetwinError(f"cannot read model file {path.name}: not a safetensors file ({_first_line(exc)})") from None
    return _decode(path, raw)


def read_model_file(path: str | Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(float32 state dict, metadata) of a model file written by :func:`write_model_file`.

    ``kind``: the network kind expected (e.g. :data:`COARSE_ENCODER`); another kind, a newer
    version or a file without facetwin metadata is a :class:`FacetwinError` (one line).
    Older versions are upgraded in memory (:func:`upgrade`).
    """
    from safetensors import safe_open

    path = _existing(path, kind)
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(HEADER_KEY)
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # e.g. a truncated file
        raise FacetwinError(f"cannot read {_KIND_NAMES.get(kind, 'model file')} {path.name}: not a complete safetensors file ({_first_line(exc)})") from None
    meta = _decode(path, raw, kind)
    found = parse_format(meta.get("format", ""))[0]
    if kind is not None and found in FORMATS and found != kind:  # another known kind: name what was expected
        raise FacetwinError(f"{path.name} is not a facetwin {kind_name(kind)} (format {meta.get('format')!r})")
    meta = upgrade(meta)  # an unknown format or a newer version is refused here
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise FacetwinError(f"{path.name} holds NaN or infinite weights (in {bad}): the model is damaged, not usable")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return state, meta


def upgrade(meta: dict) -> dict:
    """Metadata of an older version in the current one (a newer version is refused)."""
    kind, version = parse_format(meta.get("format", ""))
    if kind not in FORMATS:
        raise FacetwinError(f"unknown model-file format {meta.get('format')!r}")
    if version > FORMATS[kind]:
        raise FacetwinError(f"model file format {meta['format']} is newer than this facetwin (reads up to "
                            f"{format_name(kind)}); upgrade facetwin")
    if kind == COARSE_ENCODER and version == 2:  # v3 only added the optional identity head
        meta = dict(meta, format=format_name(kind))
    if kind == COARSE_ENCODER and version == 1:
        # v1 kept the inference properties only implicitly (training config, pipeline defaults).
        meta = dict(meta)
        meta["encoder"] = {"centre_y": 0.5, **meta["encoder"]}  # v1 files without it were trained at 0.5
        loss = (meta.get("train_config") or {}).get("loss") or {}
        meta["inference"] = coarse_inference_properties(meta["encoder"]["image_size"], loss.get("contour_mode", "silhouette"))
        meta["format"] = format_name(kind)
    if kind == DETAIL_MAE and version == 1:
        # v1 files were written before the convolutional decoder: a linear head straight to D
        # (a v1 file that names the decoder's settings keeps them)
        net = dict(meta.get("network") or {})
        net["config"] = {"refine": 0, "skip": False, "decoder_width": 0, **(net.get("config") or {})}
        meta = dict(meta, network=net, format=format_name(kind))
    return meta


def describe(path: str | Path) -> dict:
    """What a model file is, from its header alone (no tensors read): kind, format, size,
    SHA-256 and the facts of its kind — training steps, input size, for a person file its base
    model, frames, steps, held-out NME, whether it has the detail part. FacetwinError for a
    file that is not a facetwin model file."""
    path = _existing(path)
    meta = read_metadata(path)
    kind = parse_format(meta.get("format", ""))[0]
    if kind not in FORMATS:
        raise FacetwinError(f"{path.name}: unknown model-file format {meta.get('format')!r}")
    out = {"file": str(path), "kind": kind_name(kind), "format": meta.get("format"), "bytes": path.stat().st_size,
           "sha256": file_sha256(path), "head_model": meta.get("head_model")}
    if kind == PERSON:
        person = (meta.get("config") or {}).get("person") or {}
        sources = meta.get("sources") or []
        out.update({"base_model": meta.get("base_checkpoint"), "base_sha256": meta.get("base_sha256"),
                    "adapter_width": meta.get("adapter_width"), "frames": meta.get("frames"),
                    "sources": len(sources), "steps": meta.get("steps"), "best_step": meta.get("best_step"),
                    "stop_reason": meta.get("stop_reason"), "held_out_nme": meta.get("held_out_nme"),
                    "precision": meta.get("precision"), "training_seconds": meta.get("training_seconds"),
                    "neutral_rms_mm": meta.get("neutral_rms_mm"),
                    "identity_weights": {k: person[k] for k in ("identity_on_beta", "identity_on_appearance") if k in person},
                    "detail_part": (meta.get("detail") or {}).get("file")})
    else:
        out.update({"step": meta.get("step"), "total_steps": meta.get("total_steps")})
        if kind == COARSE_ENCODER:
            out.update({"input_size": (meta.get("inference") or {}).get("input_size"),
                        "identity_head": "identity_head" in meta})
        if kind == DETAIL_MAE:
            out["coarse_model"] = (meta.get("coarse_model") or {}).get("file")
    out["command"] = meta.get("command") or None
    return {k: v for k, v in out.items() if v is not None and v != {}}


def coarse_inference_properties(input_size: int, contour: str) -> dict:
    """The ``inference`` section of a coarse-encoder model file (the data pipeline's crop rule)."""
    from facetwin.data.alignment import DEFAULT_SCALE, DEFAULT_SHIFT_UP

    return {"input_size": int(input_size), "contour": contour,
            "crop": {"scale": float(DEFAULT_SCALE), "shift_up": float(DEFAULT_SHIFT_UP)}}


def input_size(path: str | Path) -> int:
    """Side (pixels) of the prepared crops a coarse-encoder model file takes, read from its header."""
    return int(upgrade(read_metadata(path))["inference"]["input_size"])


def _existing(path, kind: str | None = None) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FacetwinError(f"{_KIND_NAMES.get(kind, 'model file')} not found: {path}")
    return path


def kind_name(kind: str) -> str:
    """How messages name a file of ``kind``."""
    return _KIND_NAMES.get(kind, f"{kind} model file")


def _decode(path: Path, raw: str | None, kind: str | None = None) -> dict:
    if raw is None:
        raise FacetwinError(f"{path.name} is not a facetwin {_KIND_NAMES.get(kind, 'model file')} (no '{HEADER_KEY}' metadata in its header)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise FacetwinError(f"{path.name} has unreadable facetwin metadata") from None
    if not isinstance(meta, dict):
        raise FacetwinError(f"{path.name} has unreadable facetwin metadata")
    return meta


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
