"""``facetwin view RESULT [--out PAGE.html]``: one offline HTML page showing a face in 3D.

RESULT is a ``.glb``, a result ``.npz`` (from ``facetwin reconstruct``/``export``) or a photo. The
page embeds three.js and the GLB (no network when opened): orbit, one slider per expression, and
the GLB's animation playing if it has one.
"""

from __future__ import annotations

from pathlib import Path

from facetwin.cli.main import add_json_flag
from facetwin.errors import FacetwinError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("view", help="an offline HTML page with the face in WebGL (sliders per expression)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("result", help="a .glb, a reconstruct result .npz, or a photo")
    p.add_argument("--out", default=None, help="the page to write (default: RESULT with .html beside it)")
    add_json_flag(p)
    p.set_defaults(func=run)


def glb_of(src: Path) -> bytes:
    """The GLB bytes of a .glb, a result .npz or a photo (reconstructed with the shipped model)."""
    from facetwin.export.result import FaceResult, read_glb_or_result, result_glb

    if src.suffix.lower() in (".glb", ".npz"):
        return read_glb_or_result(src)
    from facetwin.data.io import load_image
    from facetwin.inference.reconstructor import FaceTwin

    image, _ = load_image(src)
    return result_glb(FaceResult.from_reconstruction(FaceTwin().reconstruct(image)), src.stem)


def run(args) -> dict:
    from facetwin.viewer import write_page

    src = Path(args.result)
    if not src.is_file():
        raise FacetwinError(f"not found: {src}")
    out = Path(args.out) if args.out else src.with_suffix(".html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise FacetwinError(f"--out must be an .html file, got {out}")
    page = write_page(out, glb_of(src), title=f"facetwin · {src.stem}",
                      subtitle="drag to orbit · one slider per expression · works offline")
    return {"result": str(src), "page": str(page)}
