"""``facetwin export INPUT --out DIR [--format glb,obj]``: textured, rigged files of one face.

INPUT is a photo (reconstructed with the shipped model first) or a result ``.npz`` written by
``facetwin reconstruct``. Writes ``<name>.glb`` (52 ARKit morph targets, jaw/neck/eye skin,
texture), ``<name>.obj`` + ``.mtl`` + ``_texture.png``, ``<name>_albedo.png`` and ``<name>_photo.png``;
see docs/outputs.md.
"""

from __future__ import annotations

from pathlib import Path

from facetwin.cli.main import add_json_flag, positive_int
from facetwin.errors import FacetwinError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="GLB / OBJ of a face (from a photo or a reconstruct .npz)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="a photo, or a result .npz from 'facetwin reconstruct'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", default="glb,obj", help="comma-separated: glb, obj (default both)")
    p.add_argument("--name", default=None, help="file name stem (default: the input's)")
    p.add_argument("--texture-size", type=positive_int, default=512, help="side of the texture maps in texels (default 512)")
    p.add_argument("--model", "--checkpoint", dest="model", default="default",
                   help="model file for photo inputs: 'default' (shipped), a coarse-encoder .safetensors or a training run folder")
    p.add_argument("--person", default=None, metavar="NAME.facetwin",
                   help="photo inputs: reconstruct with this person file (`facetwin personalize`): its adapters and its β")
    from facetwin.cli.reconstruct import add_detail_flag, add_refine_flag

    add_detail_flag(p)
    add_refine_flag(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def parse_formats(text: str) -> tuple[str, ...]:
    from facetwin.export import FORMATS

    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if not formats or bad:
        raise FacetwinError(f"--format: {'unknown format ' + repr(bad[0]) if bad else 'empty'} (choose from {', '.join(FORMATS)})")
    return formats


def run(args) -> dict:
    formats = parse_formats(args.format)
    if not 16 <= args.texture_size <= 4096:
        raise FacetwinError(f"--texture-size must be between 16 and 4096, got {args.texture_size}")
    src = Path(args.input)
    if not src.is_file():
        raise FacetwinError(f"input not found: {src}")
    name = args.name or src.stem
    if args.person and src.suffix.lower() == ".npz":
        raise FacetwinError("--person applies to photo inputs (a result .npz already holds its identity)")
    if src.suffix.lower() == ".npz":
        from facetwin.export import FaceResult, export_result

        files = export_result(FaceResult.from_npz(src), args.out, name, formats, args.texture_size)
    else:
        from facetwin.data.io import load_image
        from facetwin.export import write_result_files
        from facetwin.inference.reconstructor import FaceTwin

        image, _ = load_image(src)
        from facetwin.cli.reconstruct import detail_option

        res = FaceTwin(args.model, person=args.person, detail=detail_option(args.detail), refine=args.refine).reconstruct(image)
        files = write_result_files(res, args.out, name, formats, texture_size=args.texture_size)["files"]
    return {"input": str(src), "out": str(args.out), "formats": list(formats), "files": files}
