"""``facetwin train <stage>``: train one stage of the model; the stages come from the registry
(:mod:`facetwin.training.stages`), so a new stage needs no change here.

Every stage shares the same options (:func:`add_training_args`) and config loading
(:func:`load_stage_config`). One process by default; under ``torchrun --nproc_per_node N -m
facetwin train <stage> ...`` the engine runs DDP (gloo on CPU, NCCL on GPU). ``--resume auto``
continues from the latest checkpoint (resumable training state) of ``run.out_dir``; the model
file (the exported network) is written to ``<out_dir>/export/`` at every checkpoint.
"""

from __future__ import annotations

import shlex
import sys

from facetwin.cli.main import add_json_flag, nonnegative_int


def add_parser(subparsers) -> None:
    from facetwin.training.config import shipped_configs
    from facetwin.training.stages import STAGES

    help_text = "Train a stage of the model (runs under torchrun for several processes)."
    parser = subparsers.add_parser("train", help=help_text, description=help_text)
    group = parser.add_subparsers(dest="train_command", metavar="STAGE")
    configs = ", ".join(shipped_configs())
    for name, entry in STAGES.items():
        p = group.add_parser(name, help=entry.help, description=f"{entry.help}. " + __doc__.split("\n\n")[1])
        add_training_args(p, entry.default_config, configs)
        p.set_defaults(func=run, stage=name)

    def need_stage(args):
        from facetwin.errors import FacetwinError

        raise FacetwinError(f"'facetwin train' needs a stage: {', '.join(STAGES)} (see --help)")

    parser.set_defaults(func=need_stage)


def add_training_args(p, default_config: str, config_names: str) -> None:
    p.add_argument("--config", default=default_config, help=f"YAML file or shipped config name ({config_names})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-4 --set run.steps=500 (repeatable)")
    p.add_argument("--resume", default=None,
                   help="continue from a checkpoint (resumable training state): 'auto' (the latest in run.out_dir) or a checkpoint path")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in run.out_dir (its metrics, checkpoints, model file)")
    p.add_argument("--out", default=None, help="shortcut for --set run.out_dir=OUT")
    p.add_argument("--steps", type=nonnegative_int, default=None, help="shortcut for --set run.steps=N")
    add_json_flag(p)


def load_stage_config(args, config_cls):
    """The stage's typed config with the command-line overrides, and its dict (with the command)."""
    from facetwin.training.config import load_config, to_dict

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    if args.steps is not None:
        overrides.append(f"run.steps={args.steps}")
    cfg = load_config(config_cls, args.config, overrides)
    config = to_dict(cfg)
    config["command"] = " ".join(shlex.quote(a) for a in ["facetwin"] + sys.argv[1:])
    return cfg, config


def run(args) -> dict | None:
    from facetwin.training.engine import Trainer
    from facetwin.training.stages import stage_class

    stage_cls = stage_class(args.stage)
    cfg, config = load_stage_config(args, stage_cls.config_class)
    trainer = Trainer(stage_cls(cfg), cfg.run, cfg.optim, config_dict=config, resume=args.resume,
                      overwrite=args.overwrite)
    summary = trainer.train()
    if trainer.info.rank != 0:
        return None
    return stage_cls.summary(summary)
