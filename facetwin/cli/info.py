"""``facetwin info``: versions and the statistics of the selected head model; ``facetwin info
FILE``: what a model file (a person file, the base or detail model) holds."""

from __future__ import annotations

import platform

from facetwin.cli.main import add_head_model_flag, add_json_flag


def run(args) -> dict:
    if args.file:
        return describe_file(args.file)
    import numpy as np
    import torch

    from facetwin import __version__
    from facetwin.headmodel import load_head_model_data
    from facetwin.networks import onnx_runtime

    data = load_head_model_data(args.head_model)
    stats = data.statistics()
    stats["regions"] = ", ".join(stats["regions"])
    if data.expression_range is not None:
        stats["expression_range"] = f"{data.expression_range[0]:g}..{data.expression_range[1]:g}"
    if "source" in data.meta:
        stats["source"] = data.meta["source"]
    return {
        "facetwin": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "inference_backend": "onnxruntime" if onnx_runtime.wanted() else "torch",
        "head_model": stats,
    }


def describe_file(path: str) -> dict:
    """:func:`facetwin.models.files.describe`, and for a person file whether the shipped base
    model is the one it was made for (``--model`` of the other commands must be that file)."""
    from facetwin.models import files
    from facetwin.models.coarse import resolve_model_file

    described = files.describe(path)
    out = {}
    for key, value in described.items():
        out[key] = value[:16] if key in ("sha256", "base_sha256") else value
        if key == "base_sha256":
            out["fits_shipped_base_model"] = files.file_sha256(resolve_model_file("default")) == value
    return out


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("info", help="versions and the loaded head model's statistics; with a FILE, what a model "
                                                "or person file holds")
    parser.add_argument("file", nargs="?", default=None, metavar="FILE",
                        help="a model file (NAME.facetwin, a coarse-encoder or detail .safetensors): its kind, base model, "
                             "frames, steps, ...")
    add_json_flag(parser)
    add_head_model_flag(parser)
    parser.set_defaults(func=run)
