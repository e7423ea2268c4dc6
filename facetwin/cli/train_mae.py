"""``facetwin train mae --config mae.yaml``: MAE self-supervised pre-training of the ViT encoder
on face crops (the paper's ViT-MAE prior). Use the result with
``facetwin train coarse --set model.pretrained=<out>/export/vit_mae.safetensors``."""

from __future__ import annotations

from facetwin.cli.main import add_json_flag


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("mae", help="MAE pre-training of the ViT encoder on face crops", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="mae", help="YAML file or shipped config name (mae)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--resume", default=None, help="'auto' or a checkpoint path")
    p.add_argument("--out", default=None, help="shortcut for --set run.out_dir=OUT")
    p.add_argument("--steps", type=int, default=None, help="shortcut for --set run.steps=N")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> dict | None:
    from facetwin.training.config import load_config, to_dict
    from facetwin.training.engine import Trainer
    from facetwin.training.mae_stage import MaeConfig, MaeStage

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    if args.steps is not None:
        overrides.append(f"run.steps={args.steps}")
    cfg = load_config(MaeConfig, args.config, overrides)
    trainer = Trainer(MaeStage(cfg), cfg.run, cfg.optim, config_dict=to_dict(cfg), resume=args.resume)
    summary = trainer.train()
    if trainer.info.rank != 0:
        return None
    return {"out_dir": summary["out_dir"], "steps": summary["step"], "loss": summary["last"].get("loss"),
            "images_per_s": summary["images_per_s"], "encoder": f"{summary['out_dir']}/export/vit_mae.safetensors"}
