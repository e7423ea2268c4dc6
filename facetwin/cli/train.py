"""``facetwin train WHAT``: one module per WHAT (a training stage) in ``facetwin/cli/train_<what>.py``.

Every stage shares the same options (:func:`add_training_args`) and config loading
(:func:`load_stage_config`), so a new stage only names its config class and its summary.
"""

from __future__ import annotations

import shlex
import sys

from facetwin.cli.main import add_group, add_json_flag


def add_parser(subparsers) -> None:
    add_group(subparsers, "train", "Train a stage of the base model (runs under torchrun for several processes).", ["coarse", "mae"])


def add_training_args(p, default_config: str, config_names: str) -> None:
    p.add_argument("--config", default=default_config, help=f"YAML file or shipped config name ({config_names})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-4 --set run.steps=500 (repeatable)")
    p.add_argument("--resume", default=None, help="'auto' (latest checkpoint in run.out_dir) or a checkpoint path")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in run.out_dir (its metrics, checkpoints, export)")
    p.add_argument("--out", default=None, help="shortcut for --set run.out_dir=OUT")
    p.add_argument("--steps", type=int, default=None, help="shortcut for --set run.steps=N")
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
