"""``facetwin evaluate details MODEL [MODEL ...] [--names ...] [--data PREPARED] [--json] [--picture PNG]``.

Held-out frames: does rendering with details lower the photometric error against the coarse
render? For each detail model file (a UNet teacher or a detail MAE, or a training run folder), on
every prepared frame of the held-out clips (default: the ones the first model's training held out,
from its model file): the L1 photometric error of the coarse render and of the render with
details, per clip and overall, and the relative gain. Several models side by side give the
paper's Fig. 9 ablation (UNet alone · MAE without teacher · MAE with teacher); ``--picture`` writes
the comparison image (grey shading, so the geometry shows).
"""

from __future__ import annotations

from pathlib import Path

from facetwin.cli.main import add_json_flag


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("details", help="photometric error with and without details on held-out clips (Fig. 9)",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("models", nargs="+", metavar="MODEL", help="detail model files (.safetensors) or training run folders")
    p.add_argument("--names", nargs="+", default=None, help="a column name per model (default: the file's kind and run folder)")
    p.add_argument("--data", default=None, metavar="PREPARED",
                   help="prepared folder (default: data.root of the first model's training config)")
    p.add_argument("--clips", nargs="+", default=None, help="held-out clip names (default: the first model's data.holdout)")
    p.add_argument("--max-per-clip", type=int, default=0, help="at most N frames per clip, spread over it (0 = all)")
    p.add_argument("--coarse-model", default="default", help="coarse model file (default: the shipped one)")
    p.add_argument("--picture", default=None, metavar="PNG", help="write the comparison image")
    p.add_argument("--picture-frames", type=int, default=4, help="rows of the picture, one per clip in turn (default 4)")
    p.add_argument("--no-input-column", action="store_true", help="leave the photos out of the picture (renders only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def _name(path: str, meta: dict) -> str:
    kind = (meta.get("network") or {}).get("kind", "detail")
    p = Path(path)
    run = p.parent.parent.name if p.parent.name == "export" else (p.name if p.is_dir() else p.stem)
    return f"{kind} ({run})"


def run(args) -> dict:
    import torch

    from facetwin.errors import FacetwinError
    from facetwin.evaluation.details import comparison_picture, held_out_frames, photometric_table
    from facetwin.models.coarse import load_coarse_model, resolve_model_file
    from facetwin.models.detail import load_detail_model

    if args.names and len(args.names) != len(args.models):
        raise FacetwinError(f"--names gives {len(args.names)} name(s) for {len(args.models)} model(s)")
    if args.max_per_clip < 0 or args.picture_frames < 1:
        raise FacetwinError("--max-per-clip must be >= 0 and --picture-frames >= 1")
    if args.picture and Path(args.picture).suffix.lower() != ".png":
        raise FacetwinError(f"--picture must be a .png path, not {args.picture}")
    coarse_file = resolve_model_file(args.coarse_model)
    coarse, _ = load_coarse_model(coarse_file)
    models, metas = {}, []
    for k, path in enumerate(args.models):
        model, meta = load_detail_model(path, coarse=coarse, coarse_file=coarse_file)
        name = args.names[k] if args.names else _name(path, meta)
        if name in models:
            raise FacetwinError(f"two models named {name!r}: give --names")
        models[name] = model
        metas.append(meta)
    data_cfg = (metas[0].get("train_config") or {}).get("data") or {}
    root = args.data or data_cfg.get("root")
    clips = args.clips or data_cfg.get("holdout") or []
    if not root:
        raise FacetwinError("no prepared folder: pass --data (the model file's training config names none)")
    if not Path(root).is_dir():
        raise FacetwinError(f"prepared folder not found: {root}")
    size = next(iter(models.values())).image_size
    dataset, indices = held_out_frames(root, list(clips), size, args.max_per_clip)
    res = photometric_table(models, dataset, indices, progress=not args.no_progress)
    res.update(data=str(root), held_out_clips=list(clips), coarse_model=str(coarse_file),
               model_files={n: str(p) for n, p in zip(models, args.models)},
               coarse_matches={n: bool(m.get("coarse_matches")) for n, m in zip(models, metas)},
               trained_steps={n: m.get("step") for n, m in zip(models, metas)})
    if args.picture:
        from facetwin.data.prepared import clip_name
        from facetwin.rendering.visualize import save_png

        by_clip: dict[str, list[int]] = {}
        for i in indices:
            by_clip.setdefault(clip_name(dataset.keys[i]), []).append(i)
        rows, lists = [], list(by_clip.values())
        for r in range(args.picture_frames):  # clips in turn, frames from the middle of each
            idx = lists[r % len(lists)]
            rows.append(idx[min(len(idx) - 1, len(idx) // 2 + r // len(lists))])
        images = torch.stack([dataset[i]["image"] for i in rows])
        res["picture"] = str(save_png(args.picture, comparison_picture(models, images, input_column=not args.no_input_column)))
    return res
