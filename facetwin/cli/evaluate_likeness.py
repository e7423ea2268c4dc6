"""``facetwin evaluate likeness FOLDER [--model PATH] [--json] [--picture PNG]``.

Does the coarse model capture *who* is in a photo? On a folder of person sub-folders (e.g.
../shared/data/identities/eval): verification ROC AUC of β over same/different-person photo
pairs (cosine distance, ``beta_auc``), leave-one-out nearest-neighbour identification from β
(``nn_accuracy``), within/between-person β distances, and render likeness: dlib's face-descriptor
distance between each photo and the textured render of its own reconstruction composited onto it
(``render_distance``; dlib's same-person threshold is 0.6) against the same render with the mean
face β = 0 (``mean_face_render_distance``). ``photo_descriptor_*`` are dlib's own figures on the
photos, for reference. As inference does, pose, expression and camera are refined onto the
annotator's points before rendering (``--no-refine``: the encoder's prediction; β is not touched
either way).
"""

from __future__ import annotations

from pathlib import Path

from facetwin.cli.main import add_json_flag


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("likeness", help="identity in β and render likeness on a folder of people",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("folder", help="folder with one sub-folder of photos per person (e.g. ../shared/data/identities/eval)")
    p.add_argument("--model", "--checkpoint", dest="model", default="default",
                   help="model file: 'default' (shipped), a coarse-encoder .safetensors or a training run folder")
    p.add_argument("--head-model", default=None, help="head model spec (default: the one the model file was trained with)")
    p.add_argument("--picture", default=None, metavar="PNG",
                   help="write photos beside their renders, the mean face and the neutral frontal reconstructions")
    p.add_argument("--picture-people", type=int, default=10, help="people in the picture (default 10)")
    p.add_argument("--max-people", type=int, default=0, help="only the first N people (0 = all)")
    p.add_argument("--per-photo", action="store_true", help="include per-photo distances in the result")
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="render the encoder's prediction, without the landmark refinement inference applies")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    import torch

    from facetwin.errors import FacetwinError
    from facetwin.evaluation.likeness import evaluate_likeness
    from facetwin.models.coarse import load_coarse_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.max_people < 0 or args.picture_people < 1:
        raise FacetwinError("--max-people must be >= 0 and --picture-people >= 1")
    if args.picture and Path(args.picture).suffix.lower() != ".png":
        raise FacetwinError(f"--picture must be a .png path, not {args.picture}")
    model, meta = load_coarse_model(args.model, args.head_model)
    from facetwin.models.refine import RefineSettings

    res = evaluate_likeness(model, Path(args.folder), picture=args.picture, max_people=args.max_people,
                            picture_people=args.picture_people, per_photo=args.per_photo,
                            refine=RefineSettings() if args.refine else None)
    res["refine"] = bool(args.refine)
    res["model"] = str(args.model)
    res["trained_steps"] = meta.get("total_steps", meta.get("step"))
    return res
