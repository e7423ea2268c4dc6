"""The registry of training stages: ``facetwin train <stage>`` lists and runs what is here.

A new stage (``detail-teacher``, ``detail``, ``person``) is one line below plus its module: a
:class:`facetwin.training.engine.Stage` subclass with ``config_class`` (its typed config, beside
it), ``default_config`` (a shipped YAML name), ``help`` and ``summary(trainer_summary) -> dict``.
Nothing in the CLI changes. Entries are strings so that listing the stages imports no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from facetwin.errors import FacetwinError


@dataclass(frozen=True)
class StageEntry:
    target: str          # "module:Class"
    help: str            # one line for `facetwin train --help`
    default_config: str  # shipped config name (facetwin/configs/<name>.yaml)


STAGES: dict[str, StageEntry] = {
    "coarse": StageEntry("facetwin.training.coarse_stage:CoarseStage",
                         "train the coarse base model (ViT → head-model parameters)", "coarse"),
    "identity": StageEntry("facetwin.training.identity_stage:IdentityStage",
                           "train the identity head (dlib descriptor → β) of a coarse model, its encoder frozen", "identity"),
    "vit-pretrain": StageEntry("facetwin.training.vit_pretrain_stage:VitPretrainStage",
                               "masked-autoencoder pre-training of the coarse encoder's ViT on face crops", "vit-pretrain"),
    "detail-teacher": StageEntry("facetwin.training.detail_stage:DetailTeacherStage",
                                 "train the detail teacher (UNet: unwrapped texture → displacement map)", "detail-teacher"),
    "detail": StageEntry("facetwin.training.detail_stage:DetailStage",
                         "train the detail MAE (texture + tension → animatable displacement map) under the frozen UNet teacher",
                         "detail"),
}


def stage_names() -> list[str]:
    return list(STAGES)


def stage_class(name: str):
    """The Stage class registered as ``name``."""
    if name not in STAGES:
        raise FacetwinError(f"unknown training stage '{name}' (stages: {', '.join(STAGES)})")
    module, _, cls = STAGES[name].target.partition(":")
    return getattr(importlib.import_module(module), cls)
