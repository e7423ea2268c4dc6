"""The person file (``NAME.facetwin``): one person's adapters on top of a base coarse encoder.

A person-specific model (paper section 3.4) is the frozen base encoder plus a few person-specific
parameters: a Houlsby adapter in every transformer block and the layer norms of the ViT (the
encoder's ``transfer_parameters()``, :func:`facetwin.networks.adapters.transfer_parameters`;
the coarse encoder has no learnable latent and no layer norm outside its ViT). The file holds only those
(safetensors, **fp16**, ~0.3 MB for ViT-Tiny at adapter width 32 — 2.9 % of the 11 MB base), the
person's identity β (trained with the adapters, and the spread of the per-frame β) and a JSON header. It is
a model file of kind ``person`` (:mod:`facetwin.models.files`: the one writer and reader of model
files — atomic write, fp16, refusal of a truncated, NaN-holding, foreign or newer file)::

    format            "facetwin-person/1"
    base_sha256       SHA-256 of the base encoder file it was trained on (checked on load)
    base_checkpoint   that file's name; head_model; adapter_width
    frames            training / held-out frame counts; training_seconds; steps; config; command

Loading it onto another base model is refused (:func:`check_base`): the adapters are residual
corrections of one particular set of base weights and mean nothing on another.

Tensors in the file: the encoder state-dict entries of the person parameters (``vit.blocks.3.
adapter.down.weight``, ``vit.blocks.3.norm1.weight``, ``vit.norm.bias`` ...) and ``person.beta_mean``
/ ``person.beta_std`` (n_shape,). With the detail part (``facetwin personalize --detail``): the
detail MAE's person parameters — adapters, layer norms, the detail latent x_d — under ``detail.``
(``detail.blocks.0.adapter.up.weight``, ``detail.detail_latent`` ...), and a ``detail`` header entry
(the detail model file's name and SHA-256, the adapter width, the teacher, steps): they are refused
on another detail model, as the coarse part is on another base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from facetwin.errors import FacetwinError
from facetwin.models import files
from facetwin.models.files import file_sha256  # noqa: F401  (re-exported: what a person file records of its base)
from facetwin.networks.adapters import add_adapters

FORMAT = files.format_name(files.PERSON)  # "facetwin-person/1"
SUFFIX = ".facetwin"
BETA_MEAN, BETA_STD = "person.beta_mean", "person.beta_std"
DETAIL_PREFIX = "detail."  # the detail MAE's person parameters
STORE_DTYPE = torch.float16


@dataclass
class PersonFile:
    """A read person file: person parameters (float32), identity and metadata."""

    state: dict[str, torch.Tensor]   # encoder state-dict entries of the person parameters
    beta_mean: torch.Tensor          # (n_shape,) the person's β (trained with the adapters; older files: the frames' mean)
    beta_std: torch.Tensor           # (n_shape,) per-component spread of the per-frame β over the training frames
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    detail_state: dict[str, torch.Tensor] = field(default_factory=dict)  # detail MAE state-dict entries (no prefix)

    @property
    def has_details(self) -> bool:
        return bool(self.detail_state)

    @property
    def adapter_width(self) -> int:
        return int(self.meta["adapter_width"])

    @property
    def name(self) -> str:
        return self.path.stem if self.path is not None else self.meta.get("name", "person")

    def summary(self) -> dict:
        """What outputs report about the identity they used."""
        return {"person": self.name, "frames": self.meta.get("frames", {}), "beta": self.beta_mean.tolist(),
                "beta_std": self.beta_std.tolist(), "beta_std_mean": float(self.beta_std.mean()),
                "neutral_rms_mm": self.meta.get("neutral_rms_mm")}


def person_parameter_names(encoder: nn.Module) -> list[str]:
    """Encoder state-dict names of the parameters person-specific transfer trains."""
    ids = {id(p) for p in encoder.transfer_parameters()}
    return [n for n, p in encoder.named_parameters() if id(p) in ids]


def prepare_encoder(encoder: nn.Module, adapter_width: int) -> list[nn.Parameter]:
    """Freeze every base weight, insert fresh adapters (identity at insertion) and make the
    person parameters (adapters + layer norms) trainable; returns them."""
    for p in encoder.parameters():
        p.requires_grad_(False)
    add_adapters(encoder.vit, adapter_width)
    params = encoder.transfer_parameters()
    for p in params:
        p.requires_grad_(True)
    return params


def person_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The person parameters of an encoder with adapters, detached float32 copies."""
    sd = encoder.state_dict()
    return {n: sd[n].detach().float().clone() for n in person_parameter_names(encoder)}


def write_person(path: str | Path, state: dict[str, torch.Tensor], beta_mean: torch.Tensor, beta_std: torch.Tensor,
                 meta: dict, detail_state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a person file (a model file of kind ``person``, atomically, no sidecar); the person
    parameters stored as fp16, the identity as fp32; ``detail_state``: the detail MAE's person
    parameters (needs ``meta["detail"]``)."""
    if "base_sha256" not in meta or "adapter_width" not in meta:
        raise ValueError("person metadata needs base_sha256 and adapter_width")
    if detail_state and "sha256" not in (meta.get("detail") or {}):
        raise ValueError("a person file with details needs meta['detail'] with the detail model's sha256")
    tensors = dict(state)
    tensors.update({DETAIL_PREFIX + k: v for k, v in (detail_state or {}).items()})
    tensors[BETA_MEAN] = beta_mean.detach().to(torch.float32).reshape(-1)
    tensors[BETA_STD] = beta_std.detach().to(torch.float32).reshape(-1)
    return files.write_model_file(path, tensors, files.PERSON, {"dtype": "float16", **meta}, dtype=STORE_DTYPE,
                                  exact=(BETA_MEAN, BETA_STD), sidecar=False)


def read_person(path: str | Path) -> PersonFile:
    """Read a person file; FacetwinError (one line) for a missing, truncated, foreign, newer or
    NaN-holding file (:func:`facetwin.models.files.read_model_file`) or one without its identity."""
    tensors, meta = files.read_model_file(path, files.PERSON)
    path = Path(path)
    if BETA_MEAN not in tensors or BETA_STD not in tensors:
        raise FacetwinError(f"{path.name} is a damaged person file (no identity)")
    for key in ("base_sha256", "adapter_width"):
        if key not in meta:
            raise FacetwinError(f"{path.name} is a damaged person file (no {key} in its header)")
    beta_mean, beta_std = tensors.pop(BETA_MEAN), tensors.pop(BETA_STD)
    detail = {k[len(DETAIL_PREFIX):]: tensors.pop(k) for k in [k for k in tensors if k.startswith(DETAIL_PREFIX)]}
    if detail and "sha256" not in (meta.get("detail") or {}):
        raise FacetwinError(f"{path.name} is a damaged person file (detail parameters without their detail model)")
    return PersonFile(tensors, beta_mean, beta_std, meta, path, detail)


def check_base(person: PersonFile, base_path: str | Path) -> None:
    """Refuse a person file made for another base encoder file (compared by SHA-256)."""
    digest = file_sha256(base_path)
    if person.meta.get("base_sha256") != digest:
        made_for = person.meta.get("base_checkpoint", "?")
        raise FacetwinError(
            f"{person.name}{SUFFIX} was made for another base model ({made_for}, sha256 {str(person.meta.get('base_sha256'))[:12]}), "
            f"not {Path(base_path).name} (sha256 {digest[:12]}): personalise again with this base model"
        )


def attach_person(encoder: nn.Module, person: PersonFile, fix_identity: bool = True):
    """Turn a base encoder (loaded from the file the person was made for) into the person model.

    Adds adapters of the person's width and loads the person parameters. With ``fix_identity``
    the encoder's β output is replaced by the person's β on every forward (one identity per person
    in every output: reconstruct, evaluate, export, animate); returns that hook's handle
    (``handle.remove()`` gives the per-frame β back), or None.
    """
    add_adapters(encoder.vit, person.adapter_width)
    expected = set(person_parameter_names(encoder))
    if set(person.state) != expected:
        extra, missing = sorted(set(person.state) - expected), sorted(expected - set(person.state))
        raise FacetwinError(f"{person.name}{SUFFIX} does not fit this encoder ({len(missing)} parameters missing, "
                            f"{len(extra)} unknown, e.g. {(missing or extra)[0]})")
    sd = encoder.state_dict()
    for k, v in person.state.items():
        if sd[k].shape != v.shape:
            raise FacetwinError(f"{person.name}{SUFFIX} does not fit this encoder ({k}: {tuple(v.shape)} vs {tuple(sd[k].shape)})")
    encoder.load_state_dict(person.state, strict=False)
    if not fix_identity:
        return None
    n = encoder.layout.n_shape
    if person.beta_mean.numel() != n:
        raise FacetwinError(f"{person.name}{SUFFIX} has {person.beta_mean.numel()} identity components, the encoder {n}")
    return fix_shape(encoder, person.beta_mean)


def detail_parameter_names(network: nn.Module) -> list[str]:
    """State-dict names of what person-specific transfer trains in a detail MAE (adapters, layer
    norms, x_d: ``network.transfer_parameters()``)."""
    ids = {id(p) for p in network.transfer_parameters()}
    return [n for n, p in network.named_parameters() if id(p) in ids]


def attach_person_details(network: nn.Module, person: PersonFile, detail_file: str | Path) -> None:
    """Turn the base detail MAE ``network`` (loaded from ``detail_file``) into the person's: adds
    adapters of the person's detail width and loads its detail parameters. Refused (one line) for
    a person file without details, or with details made for another detail model file."""
    info = person.meta.get("detail") or {}
    if not person.has_details:
        raise FacetwinError(f"{person.name}{SUFFIX} has no detail part (personalise with --detail)")
    digest = file_sha256(detail_file)
    if info.get("sha256") != digest:
        raise FacetwinError(f"{person.name}{SUFFIX}'s details were made for another detail model ({info.get('file', '?')}, "
                            f"sha256 {str(info.get('sha256'))[:12]}), not {Path(detail_file).name} (sha256 {digest[:12]})")
    if not hasattr(network, "transfer_parameters") or not hasattr(network, "blocks"):
        raise FacetwinError(f"{person.name}{SUFFIX}'s details are for a detail MAE, not a {type(network).__name__}")
    add_adapters(network, int(info["adapter_width"]))
    expected = set(detail_parameter_names(network))
    sd = network.state_dict()
    if set(person.detail_state) != expected or any(sd[k].shape != v.shape for k, v in person.detail_state.items()):
        raise FacetwinError(f"{person.name}{SUFFIX}'s details do not fit this detail model")
    network.load_state_dict(person.detail_state, strict=False)


class _FixedShape:
    """The handle of :func:`fix_shape`: ``remove()`` gives the per-image β back."""

    def __init__(self, encoder: nn.Module):
        self.encoder = encoder

    def remove(self) -> None:
        self.encoder.fixed_shape = None


def fix_shape(encoder: nn.Module, beta: torch.Tensor) -> _FixedShape:
    """One β for every image: ``encoder.fixed_shape = beta`` (n_shape,). The coarse model
    (:meth:`facetwin.models.coarse.CoarseModel.complete`) then uses it in place of the per-image β
    (the encoder's and its identity head's) and re-fits the camera to it, so the person's face sits
    where the encoder placed the face. ``handle.remove()`` gives the per-image β back."""
    ref = next(encoder.parameters())
    encoder.fixed_shape = beta.detach().to(ref.device, torch.float32)
    return _FixedShape(encoder)


def load_person(path: str | Path, encoder: nn.Module, base_path: str | Path, fix_identity: bool = True) -> PersonFile:
    """Read ``path``, check it was made for ``base_path`` and attach it to ``encoder`` (loaded from that file)."""
    person = read_person(path)
    check_base(person, base_path)
    attach_person(encoder, person, fix_identity)
    return person
