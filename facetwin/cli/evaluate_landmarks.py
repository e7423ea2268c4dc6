"""``facetwin evaluate landmarks FOLDER [--checkpoint PATH] [--json] [--ced-plot PNG]``.

68-point NME of the coarse model's projected landmarks on an annotated folder (images + iBUG
.pts), outer-eye-corner normalised, for the boundary (points 1–17), the inner points (18–68)
and all 68, also split by head turn (``by_pose``: frontal / moderate / large, from the ground
truth's nose asymmetry, see ``facetwin.evaluation.nme.nose_asymmetry``). Faces are cropped from the annotation like the training crops (``--crop gt``,
default) or from the automatic annotator (``--crop detect``).
"""

from __future__ import annotations

from pathlib import Path

from facetwin.cli.main import add_json_flag


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("landmarks", help="68-point NME of the coarse model on an annotated folder",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("folder", help="folder with images and .pts files (e.g. ../shared/data/eval/helen-test)")
    p.add_argument("--checkpoint", default="default", help="'default' (shipped), an exported .safetensors or a run folder")
    p.add_argument("--person", default=None, metavar="NAME.facetwin", help="evaluate the person model of this person file")
    p.add_argument("--head-model", default=None, help="head model spec (default: the one the checkpoint was trained with)")
    p.add_argument("--crop", choices=["gt", "detect"], default="gt", help="crop from the annotation (default) or the detector")
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--contour", choices=["static", "auto", "silhouette", "marching"], default="static",
                   help="where the 17 contour points go: static (default, the projected mesh landmarks); "
                        "silhouette (occluded points moved to the nearest vertex of the visible outline, Eq. 1 at inference); "
                        "marching (FLAME's dynamic contour); auto (as the checkpoint was trained)")
    p.add_argument("--ced-plot", default=None, metavar="PNG", help="write the cumulative error distribution plot")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="also evaluate another checkpoint and draw it in the CED plot (repeatable)")
    p.add_argument("--per-image", action="store_true", help="include per-image errors in the result")
    add_json_flag(p)
    p.set_defaults(func=run)


def contour_convention(meta: dict, requested: str) -> str:
    """The contour convention to evaluate a checkpoint with: ``requested`` unless it is 'auto',
    then the one its training used (``loss.contour_mode`` in the export's sidecar)."""
    if requested != "auto":
        return requested
    return ((meta.get("train_config") or {}).get("loss") or {}).get("contour_mode", "silhouette")


def run(args) -> dict:
    import torch

    from facetwin.inference.landmark_eval import ced_plot, evaluate_folder
    from facetwin.inference.reconstructor import load_coarse_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    folder = Path(args.folder)
    model, meta = load_coarse_model(args.checkpoint, args.head_model)
    if args.person:
        from facetwin.inference.reconstructor import resolve_checkpoint
        from facetwin.models.person import load_person

        load_person(args.person, model.encoder, resolve_checkpoint(args.checkpoint))
    contour = contour_convention(meta, args.contour)
    res = evaluate_folder(model, folder, limit=args.limit or None, crop=args.crop, contour=contour)
    out = {"folder": str(folder), "checkpoint": str(args.checkpoint), "crop": args.crop, "contour": contour, "images": res["images"],
           "nme_boundary": res["nme_boundary"], "nme_inner": res["nme_inner"], "nme_overall": res["nme_overall"],
           "auc_0.08": res["auc_0.08"], "by_pose": res["by_pose"],
           "trained_steps": meta.get("total_steps", meta.get("step"))}
    if args.person:
        out["person"] = str(args.person)
    curves = {"shipped" if args.checkpoint == "default" else Path(str(args.checkpoint)).stem: res["per_image"]}
    for item in args.compare:
        name, _, ckpt = item.partition("=")
        other, other_meta = load_coarse_model(ckpt or name, args.head_model)
        other_contour = contour_convention(other_meta, args.contour)
        r2 = evaluate_folder(other, folder, limit=args.limit or None, crop=args.crop, contour=other_contour)
        out[f"{name}"] = {k: r2[k] for k in ("nme_boundary", "nme_inner", "nme_overall", "auc_0.08", "by_pose")}
        out[f"{name}"]["contour"] = other_contour
        curves[name] = r2["per_image"]
    if args.ced_plot:
        out["ced_plot"] = str(ced_plot(curves, Path(args.ced_plot), title=f"{folder.name}: cumulative error distribution ({res['images']} images)"))
    if args.per_image:
        out["per_image"] = res["per_image"]
    return out
