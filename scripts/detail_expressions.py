#!/usr/bin/env python
"""Wrinkles that follow the expression (issue #16, item 7): one row per face —
input · coarse shading · detailed shading · the same person with a brow raise · a smile · a squint.

    python scripts/detail_expressions.py --detail MODEL [PHOTO ...] --out docs/images/detail_expressions.png

Shading is grey under a fixed studio light (no albedo: the geometry shows). The coarse column uses
the coarse mesh normals; the others the detail normals of D = 𝒜(texture of the photo, T_UV of the
expression shown): the source's own expression, then its expression with the named ARKit
blendshapes set (brow raise: browInnerUp + browOuterUp*; smile: mouthSmile*; squint: eyeSquint* +
cheekSquint*), so the tension and D are recomputed (``DetailModel.animate``). Without PHOTOs the
public-domain astronaut of scikit-image (NASA) is used, so the picture can go into the docs;
``--no-input`` leaves the photo out — its column and the backdrop around the mesh (grey instead):
for research photos that must not be published.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def row(ft, photo: Path, size: int, with_input: bool) -> list[tuple[str, np.ndarray]]:
    from facetwin.cli.animate import detail_expression_tiles, load_source

    src = load_source(photo, ft)
    if src.detail_texture is None:
        raise SystemExit("detail_expressions: the model gave no detail maps (is --detail a detail model file?)")
    return detail_expression_tiles(ft, src, size, with_input, backdrop=with_input)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", nargs="*", type=Path, help="photos of faces (default: scikit-image's astronaut)")
    ap.add_argument("--detail", required=True, help="a detail MAE model file (or run folder)")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--size", type=int, default=256, help="side of each tile in pixels (default 256)")
    ap.add_argument("--no-input", action="store_true", help="leave the photo out: no input column, grey around the mesh")
    args = ap.parse_args(argv)

    from facetwin.errors import FacetwinError
    from facetwin.inference.reconstructor import FaceTwin
    from facetwin.inference.video import label_frame
    from facetwin.outputs import write_image

    photos = list(args.photos)
    tmp = None
    if not photos:
        from skimage import data

        tmp = tempfile.TemporaryDirectory()
        photos = [Path(tmp.name) / "astronaut.png"]
        write_image(photos[0], data.astronaut())
    try:
        ft = FaceTwin(detail=args.detail)
        rows = [row(ft, p, args.size, not args.no_input) for p in photos]
    except FacetwinError as exc:
        print(f"detail_expressions: {exc}", file=sys.stderr)
        return 2
    lines = [np.concatenate([label_frame(t, l) for l, t in tiles], 1) for tiles in rows]
    write_image(args.out, np.concatenate(lines, 0))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
