"""How much likeness can β (or the albedo α) express at all? Per-photo optimisation of the
identity loss (dlib descriptor distance of the composite render to the photo) over β alone, or α
alone, everything else fixed at the model's prediction — the ceiling a perfect regressor could
reach with this head model and albedo model, measured with the benchmark's render distance.

    python benchmarks/likeness_oracle.py ../shared/data/identities/eval --photos 24 --iters 40
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--model", "--checkpoint", dest="model", default="default")
    ap.add_argument("--photos", type=int, default=24, help="first photo of each of the first N people")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--region", choices=["head", "face"], default="face", help="what the optimised composite pastes")
    ap.add_argument("--picture", default=None, help="PNG: photo · predicted · β optimised (composite, neutral frontal) · α optimised")
    args = ap.parse_args()
    from facetwin.evaluation.likeness import LikenessRenderer, _to_tensor, label_photo, person_folders
    from facetwin.models.coarse import load_coarse_model
    from facetwin.losses.identity import default_descriptor, face_chips
    from facetwin.losses.perceptual import composite_render
    from facetwin.networks.coarse_encoder import CoarseParams

    model, _ = load_coarse_model(args.model)
    rend = LikenessRenderer(model)
    desc = default_descriptor()
    photos = [label_photo(n, ps[0]) for n, ps in person_folders(args.folder)]
    photos = [p for p in photos if p is not None][: args.photos]
    x = _to_tensor([p.crop for p in photos], "cpu")
    lm = torch.from_numpy(np.stack([p.landmarks for p in photos])).float()
    with torch.no_grad():
        params = model.encoder(model.encoder_input(x)).to(torch.float32)
        f_photo = desc(face_chips(x, lm))

    def distances(p: CoarseParams, shape=None) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = rend.render(p, shape=shape)
        head = desc(face_chips(composite_render(img, x, mask), lm))
        face = desc(face_chips(composite_render(img, x, rend.face_mask()), lm))
        return (head - f_photo).norm(dim=-1), (face - f_photo).norm(dim=-1)

    out = {"photos": len(photos)}
    tiles = {}
    with torch.no_grad():
        h, f = distances(params)
        h0, f0 = distances(params, shape=torch.zeros_like(params.shape))
    out["predicted"] = {"head": float(h.mean()), "face": float(f.mean()), "beta_norm": float(params.shape.norm(dim=1).mean())}
    out["mean_face"] = {"head": float(h0.mean()), "face": float(f0.mean())}
    for what in ("shape", "albedo"):
        var = getattr(params, what).detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([var], lr=args.lr)
        for _ in range(args.iters):
            p = CoarseParams(**{**params.as_dict(), what: var})
            h, f = distances(p)
            loss = (f if args.region == "face" else h).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            h, f = distances(CoarseParams(**{**params.as_dict(), what: var}))
        out[f"optimised_{what}"] = {"head": float(h.mean()), "face": float(f.mean()), "norm": float(var.norm(dim=1).mean())}
        if args.picture:
            with torch.no_grad():
                p = CoarseParams(**{**params.as_dict(), what: var.detach()})
                img, _ = rend.render(p)
                tiles[what] = composite_render(img, x, rend.face_mask())
                front, fm = rend.render(p, frontal=True)
                tiles[what + "_front"] = composite_render(front, torch.ones_like(front), fm)
    if args.picture:
        from facetwin.evaluation.likeness import _to_uint8
        from facetwin.outputs import write_image
        from facetwin.rendering.visualize import image_grid

        with torch.no_grad():
            img, _ = rend.render(params)
            pred = composite_render(img, x, rend.face_mask())
            front, fm = rend.render(params, frontal=True)
            pred_front = composite_render(front, torch.ones_like(front), fm)
        cols = [x, pred, pred_front, tiles["shape"], tiles["shape_front"], tiles["albedo"]]
        cols = [_to_uint8(c) for c in cols]
        write_image(args.picture, image_grid([c[i] for i in range(len(photos)) for c in cols], columns=len(cols)))
        out["picture"] = args.picture
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
