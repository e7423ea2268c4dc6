"""``facetwin train coarse --config coarse.yaml [--set key=value ...]``: train the coarse encoder.

One process by default; under ``torchrun --nproc_per_node N -m facetwin train coarse ...`` the
engine runs DDP (gloo on CPU, NCCL on GPU). ``--resume auto`` continues from the latest
checkpoint of ``run.out_dir``. The encoder is exported (fp16 safetensors + JSON) to
``<out_dir>/export/coarse_encoder.safetensors`` at every checkpoint.
"""

from __future__ import annotations

from facetwin.cli.train import add_training_args, load_stage_config


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("coarse", help="train the coarse base model (ViT → head-model parameters)",
                              description=__doc__.split("\n\n")[0])
    add_training_args(p, "coarse", "coarse, coarse_ablation_marching, coarse_smoke")
    p.set_defaults(func=run)


def run(args) -> dict:
    from facetwin.training.coarse_stage import CoarseStage
    from facetwin.training.config import CoarseConfig
    from facetwin.training.engine import Trainer

    cfg, config = load_stage_config(args, CoarseConfig)
    trainer = Trainer(CoarseStage(cfg), cfg.run, cfg.optim, config_dict=config, resume=args.resume,
                      overwrite=getattr(args, "overwrite", False))
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
