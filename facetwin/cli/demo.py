"""``facetwin demo --out DIR``: reconstruct the astronaut photo shipped by scikit-image with the
shipped coarse model (overlay PNG, mesh OBJ, parameters)."""

from __future__ import annotations

from pathlib import Path

from facetwin.cli.main import add_json_flag


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="reconstruct a bundled photo (skimage astronaut) with the shipped model")
    p.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    import numpy as np
    from skimage import data

    from facetwin.inference.reconstructor import DEFAULT_CHECKPOINT

    from facetwin.outputs import ensure_dir, write_image

    out = ensure_dir(args.out)
    image = np.ascontiguousarray(data.astronaut())
    write_image(out / "astronaut.png", image)
    if not DEFAULT_CHECKPOINT.is_file():
        return _head_model_only(out)
    from facetwin.cli.reconstruct import save_result
    from facetwin.inference.reconstructor import FaceTwin

    ft = FaceTwin("default")
    res = ft.reconstruct(image)
    saved = save_result(res, out, "astronaut")
    pose = res.params["pose"]
    return {"out": str(out), "checkpoint": str(DEFAULT_CHECKPOINT), "overlay": saved["overlay"], "mesh": saved["obj"],
            "vertices": int(res.vertices.shape[0]), "yaw_deg": float(np.degrees(pose[0, 1])),
            "jaw_open_deg": float(np.degrees(pose[2, 0])), "scale_px_per_m": res.scale}


def _head_model_only(out: Path) -> dict:
    """Before a checkpoint exists: show the head model's mean face."""
    import torch

    from facetwin.headmodel import load_head_model
    from facetwin.rendering.visualize import render_geometry, save_png

    head = load_head_model("open")
    with torch.no_grad():
        v = head(batch_size=1).vertices[0]
    img, _ = render_geometry(v, head.faces, 1400.0, torch.tensor([256.0, 400.0]), 512)
    path = save_png(out / "head_model.png", img)
    return {"out": str(out), "checkpoint": None, "note": "no shipped coarse checkpoint yet: showing the head model", "picture": str(path)}
