"""``facetwin train coarse --config coarse.yaml [--set key=value ...]``: train the coarse encoder.

One process by default; under ``torchrun --nproc_per_node N -m facetwin train coarse ...`` the
engine runs DDP (gloo on CPU, NCCL on GPU). ``--resume auto`` continues from the latest
checkpoint of ``run.out_dir``. The encoder is exported (fp16 safetensors + JSON) to
``<out_dir>/export/coarse_encoder.safetensors`` at every checkpoint.
"""

from __future__ import annotations

import shlex
import sys

from facetwin.cli.main import add_json_flag


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("coarse", help="train the coarse base model (ViT → head-model parameters)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="coarse", help="YAML file or shipped config name (coarse, coarse_ablation_marching, coarse_smoke)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-4 --set run.steps=500 (repeatable)")
    p.add_argument("--resume", default=None, help="'auto' (latest checkpoint in run.out_dir) or a checkpoint path")
    p.add_argument("--out", default=None, help="shortcut for --set run.out_dir=OUT")
    p.add_argument("--steps", type=int, default=None, help="shortcut for --set run.steps=N")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    from facetwin.training.coarse_stage import CoarseStage
    from facetwin.training.config import CoarseConfig, load_config, to_dict
    from facetwin.training.engine import Trainer

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    if args.steps is not None:
        overrides.append(f"run.steps={args.steps}")
    cfg = load_config(CoarseConfig, args.config, overrides)
    config = to_dict(cfg)
    config["command"] = " ".join(shlex.quote(a) for a in ["facetwin"] + sys.argv[1:])
    trainer = Trainer(CoarseStage(cfg), cfg.run, cfg.optim, config_dict=config, resume=args.resume)
    summary = trainer.train()
    if trainer.info.rank != 0:
        return None
    last = summary["last"]
    return {
        "out_dir": summary["out_dir"],
        "steps": summary["step"],
        "loss": last.get("loss"),
        "train_nme": last.get("nme"),
        "images_per_s": summary["images_per_s"],
        "encoder": f"{summary['out_dir']}/export/coarse_encoder.safetensors",
    }
