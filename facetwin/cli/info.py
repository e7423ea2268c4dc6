"""``facetwin info``: versions and the statistics of the selected head model."""

from __future__ import annotations

import platform

from facetwin.cli.main import add_head_model_flag, add_json_flag


def run(args) -> dict:
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


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("info", help="versions and the loaded head model's statistics")
    add_json_flag(parser)
    add_head_model_flag(parser)
    parser.set_defaults(func=run)
