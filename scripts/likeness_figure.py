"""docs/images/likeness_renders.png: neutral frontal reconstructions of several people, beside the
mean face — renders only (the photos are research-use data and stay out of the repository;
`facetwin evaluate likeness FOLDER --picture P` draws them next to the renders on your machine).

    python scripts/likeness_figure.py ../shared/data/identities/eval --people 8 [--model M] [--out PNG]

One photo per person (the first usable one); each render: the person's β (the shipped model: ViT
+ identity head), zero pose and expression, the albedo and light of that photo, the camera of a
zero encoder output; the last tile is the mean face (β = 0) with the first photo's albedo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="folder of person sub-folders")
    ap.add_argument("--people", type=int, default=8)
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "likeness_renders.png"))
    args = ap.parse_args()

    import cv2
    import numpy as np
    import torch

    from facetwin.evaluation.likeness import LikenessRenderer, _to_tensor, _to_uint8, label_photo, person_folders
    from facetwin.losses.perceptual import composite_render
    from facetwin.models.coarse import load_coarse_model
    from facetwin.outputs import write_image
    from facetwin.rendering.visualize import image_grid

    model, _ = load_coarse_model(args.model)
    rend = LikenessRenderer(model)
    photos = []
    for name, paths in person_folders(args.folder):
        ph = next((p for p in (label_photo(name, path) for path in paths) if p is not None), None)
        if ph is not None:
            photos.append(ph)
        if len(photos) == args.people:
            break
    with torch.no_grad():
        images = _to_tensor([p.crop for p in photos], "cpu")
        params = model.predict(images)
        own, mask = rend.render(params, frontal=True)
        mean, mmask = rend.render(params.index(torch.tensor([0])), shape=torch.zeros_like(params.shape[:1]), frontal=True)
        white = torch.ones_like(own)
        tiles = [np.ascontiguousarray(t) for t in
                 list(_to_uint8(composite_render(own, white, mask))) + list(_to_uint8(composite_render(mean, white[:1], mmask)))]
    names = [p.person.replace("_", " ") for p in photos] + ["mean face (b = 0)"]
    for tile, name in zip(tiles, names):
        cv2.putText(tile, name[:22], (4, tile.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    write_image(args.out, image_grid(tiles, columns=(len(tiles) + 1) // 2))
    print(args.out)


if __name__ == "__main__":
    main()
