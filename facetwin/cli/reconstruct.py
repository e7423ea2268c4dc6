"""``facetwin reconstruct IMAGE|FOLDER|VIDEO --out DIR [--json]``: coarse 3D reconstruction.

Per image (or sampled video frame) it writes ``<name>.npz`` and ``<name>.json`` (parameters,
camera, 2D/3D landmarks), ``<name>.obj`` (the posed mesh) and ``<name>_overlay.png``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from facetwin.cli.main import add_head_model_flag, add_json_flag
from facetwin.errors import FacetwinError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("reconstruct", help="coarse 3D face reconstruction of images, a folder or a video",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="an image, a folder of images or a video")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoint", default="default", help="'default' (shipped), an exported .safetensors or a run folder")
    add_head_model_flag(p)
    p.set_defaults(head_model=None)
    p.add_argument("--person", default=None, metavar="NAME.facetwin", help="a person file (`facetwin personalize`): its model and its β")
    p.add_argument("--fps", type=float, default=2.0, help="video frames per second to reconstruct")
    p.add_argument("--max-frames", type=int, default=100)
    add_json_flag(p)
    p.set_defaults(func=run)


def _inputs(path: Path, fps: float, max_frames: int):
    from facetwin.data.io import is_image_path, is_video_path, load_image

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if is_image_path(p))
        if not files:
            raise FacetwinError(f"no images in {path}")
        for f in files:
            yield f.stem, f
    elif is_video_path(path):
        from facetwin.data.video import iter_frames

        for index, _, frame, _ in iter_frames(path, None, fps, max_frames):
            yield f"{path.stem}_f{index:06d}", frame
    elif path.is_file():
        load_image(path)  # clear error for unreadable files before loading the model
        yield path.stem, path
    else:
        raise FacetwinError(f"input not found: {path}")


def save_result(res, out: Path, name: str) -> dict:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / f"{name}.npz", vertices=res.vertices, faces=res.faces, landmarks2d=res.landmarks2d,
                        landmarks3d=res.landmarks3d, scale=res.scale, translation=res.translation,
                        crop_transform=res.crop_transform, **{f"param_{k}": v for k, v in res.params.items()})
    (out / f"{name}.json").write_text(json.dumps(res.to_dict()) + "\n")
    res.save_obj(out / f"{name}.obj")
    Image.fromarray(res.overlay()).save(out / f"{name}_overlay.png")
    return {"name": name, "overlay": str(out / f"{name}_overlay.png"), "obj": str(out / f"{name}.obj")}


def run(args) -> dict:
    from tqdm import tqdm

    from facetwin.inference.reconstructor import FaceTwin

    src = Path(args.input)
    items = list(_inputs(src, args.fps, args.max_frames))
    ft = FaceTwin(args.checkpoint, head_model=args.head_model, person=args.person)
    out = Path(args.out)
    done, failed = [], []
    for name, item in tqdm(items, desc="reconstruct", file=sys.stderr, disable=len(items) < 2):
        try:
            res = ft.reconstruct(item)
        except FacetwinError as exc:
            if len(items) == 1:
                raise
            failed.append({"name": name, "reason": str(exc)})
            continue
        done.append(save_result(res, out, name))
    if not done:
        raise FacetwinError(f"no face reconstructed in {src} ({failed[0]['reason'] if failed else 'no input'})")
    result = {"input": str(src), "out": str(out), "reconstructed": len(done), "failed": len(failed),
              "failures": failed[:20], "outputs": done[:20]}
    if ft.person is not None:  # one identity for the person: its β (mean over its training frames) and spread
        result["person"] = {k: v for k, v in ft.person.summary().items() if k != "beta_std"}
    return result
