"""``facetwin train mae --config mae.yaml``: MAE self-supervised pre-training of the ViT encoder
on face crops (the paper's ViT-MAE prior). Use the result with
``facetwin train coarse --set model.pretrained=<out>/export/vit_mae.safetensors``."""

from __future__ import annotations

from facetwin.cli.train import add_training_args, load_stage_config


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("mae", help="MAE pre-training of the ViT encoder on face crops", description=__doc__.split("\n\n")[0])
    add_training_args(p, "mae", "mae")
    p.set_defaults(func=run)


def run(args) -> dict | None:
    from facetwin.training.engine import Trainer
    from facetwin.training.mae_stage import MaeConfig, MaeStage

    cfg, config = load_stage_config(args, MaeConfig)
    trainer = Trainer(MaeStage(cfg), cfg.run, cfg.optim, config_dict=config, resume=args.resume,
                      overwrite=getattr(args, "overwrite", False))
    summary = trainer.train()
    if trainer.info.rank != 0:
        return None
    return {"out_dir": summary["out_dir"], "steps": summary["step"], "loss": summary["last"].get("loss"),
            "images_per_s": summary["images_per_s"], "encoder": f"{summary['out_dir']}/export/vit_mae.safetensors"}
