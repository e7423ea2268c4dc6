"""``facetwin evaluate landmarks FOLDER [--model PATH] [--json] [--ced-plot PNG]``.

68-point NME of the coarse model's projected landmarks on an annotated folder (images + iBUG
.pts), outer-eye-corner normalised, for the boundary (points 1–17), the inner points (18–68)
and all 68, also split by head turn (``by_pose``: frontal / moderate / large, from the ground
truth's nose asymmetry, see ``facetwin.evaluation.nme.nose_asymmetry``). Faces are cropped from the annotation like the training crops (``--crop gt``,
default) or from the automatic annotator (``--crop detect``). As inference does, the prediction
is refined onto the automatic annotator's points (``--no-refine``: the encoder alone; the JSON
holds both, the encoder's under ``regressor``).
"""

from __future__ import annotations

from pathlib import Path

from facetwin.cli.main import add_json_flag, nonnegative_int
from facetwin.errors import FacetwinError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("landmarks", help="68-point NME of the coarse model on an annotated folder",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("folder", help="folder with images and .pts files (e.g. ../shared/data/eval/helen-test)")
    p.add_argument("--model", "--checkpoint", dest="model", default="default", help="model file: 'default' (shipped), a coarse-encoder .safetensors or a training run folder")
    p.add_argument("--person", default=None, metavar="NAME.facetwin", help="evaluate the person model of this person file")
    p.add_argument("--head-model", default=None, help="head model spec (default: the one the model file was trained with)")
    p.add_argument("--crop", choices=["gt", "detect"], default="gt", help="crop from the annotation (default) or the detector")
    p.add_argument("--limit", type=nonnegative_int, default=0, help="only the first N images (default 0: all)")
    p.add_argument("--contour", choices=["static", "auto", "silhouette", "marching"], default="static",
                   help="where the 17 contour points go: static (default, the projected mesh landmarks); "
                        "silhouette (occluded points moved to the nearest vertex of the visible outline, Eq. 1 at inference); "
                        "marching (FLAME's dynamic contour); auto (as the model file says it was trained)")
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="score the encoder's prediction alone, without the landmark refinement inference applies")
    p.add_argument("--ced-plot", default=None, metavar="PNG", help="write the cumulative error distribution plot")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=MODEL_FILE",
                   help="also evaluate another model file and draw it in the CED plot (repeatable)")
    p.add_argument("--per-image", action="store_true", help="include per-image errors in the result")
    add_json_flag(p)
    p.set_defaults(func=run)


def contour_convention(meta: dict, requested: str) -> str:
    """The contour convention to evaluate a model file with: ``requested`` unless it is 'auto',
    then the one it was trained with (``inference.contour`` in the model file)."""
    if requested != "auto":
        return requested
    return meta["inference"]["contour"]


def run(args) -> dict:
    import torch

    from facetwin.evaluation.landmarks import ced_plot, evaluate_folder
    from facetwin.models.coarse import load_coarse_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.ced_plot:  # before the evaluation: a plot that cannot be written must not cost the run
        from facetwin.outputs import check_target

        check_target(args.ced_plot)
        if Path(args.ced_plot).suffix.lower() not in (".png", ".pdf", ".svg"):
            raise FacetwinError(f"--ced-plot {args.ced_plot}: write a .png, .pdf or .svg")
    folder = Path(args.folder)
    model, meta = load_coarse_model(args.model, args.head_model)
    if args.person:
        from facetwin.models.coarse import resolve_model_file
        from facetwin.models.person import load_person

        load_person(args.person, model.encoder, resolve_model_file(args.model))
    from facetwin.models.refine import RefineSettings

    refine = RefineSettings() if args.refine else None
    contour = contour_convention(meta, args.contour)
    res = evaluate_folder(model, folder, limit=args.limit or None, crop=args.crop, contour=contour,
                          crop_rule=meta["inference"]["crop"], refine=refine)
    out = {"folder": str(folder), "model": str(args.model), "crop": args.crop, "contour": contour, "images": res["images"],
           "nme_boundary": res["nme_boundary"], "nme_inner": res["nme_inner"], "nme_overall": res["nme_overall"],
           "auc_0.08": res["auc_0.08"], "by_pose": res["by_pose"],
           "trained_steps": meta.get("total_steps", meta.get("step")), "refine": bool(args.refine)}
    if args.refine:
        out["refined_images"] = res["refined_images"]
        out["regressor"] = {k: res["regressor"][k] for k in ("nme_boundary", "nme_inner", "nme_overall", "auc_0.08", "by_pose")}
    if args.person:
        out["person"] = str(args.person)
    name = "shipped" if args.model == "default" else Path(str(args.model)).stem
    curves = {f"{name}, refined" if args.refine else name: res["per_image"]}
    if args.refine:  # the encoder alone beside the refined prediction
        curves[f"{name}, encoder alone"] = res["regressor"]["per_image"]
    for item in args.compare:
        name, _, model_file = item.partition("=")
        other, other_meta = load_coarse_model(model_file or name, args.head_model)
        other_contour = contour_convention(other_meta, args.contour)
        r2 = evaluate_folder(other, folder, limit=args.limit or None, crop=args.crop, contour=other_contour,
                             crop_rule=other_meta["inference"]["crop"], refine=refine)
        out[f"{name}"] = {k: r2[k] for k in ("nme_boundary", "nme_inner", "nme_overall", "auc_0.08", "by_pose")}
        out[f"{name}"]["contour"] = other_contour
        curves[name] = r2["per_image"]
    if args.ced_plot:
        out["ced_plot"] = str(ced_plot(curves, Path(args.ced_plot), title=f"{folder.name}: cumulative error distribution ({res['images']} images)"))
    if args.per_image:
        out["per_image"] = res["per_image"]
    return out
