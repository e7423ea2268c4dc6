"""Regenerate the rendering example pictures in docs/images/ from skimage's astronaut photo.

    .venv/bin/python scripts/make_render_example.py [--out docs/images]

Steps: dlib 68 landmarks on ``skimage.data.astronaut()`` (public domain) → fit the open head
model (``facetwin.headmodel.fitting.fit_landmarks``) → shaded head over the photo, landmarks and
silhouette vertices, and the photo unwrapped into UV space with its visibility mask.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="output folder")
    parser.add_argument("--uv-size", type=int, default=256)
    args = parser.parse_args(argv)

    from skimage.data import astronaut

    from facetwin.data.annotator import annotate
    from facetwin.geometry.camera import orthographic_screen_vertices, project_orthographic
    from facetwin.headmodel import load_head_model
    from facetwin.headmodel.fitting import fit_landmarks
    from facetwin.rendering import MeshRenderer, UVMapper, default_lighting, silhouette_vertices
    from facetwin.rendering.visualize import draw_landmarks, image_grid, overlay, save_png, to_uint8

    torch.manual_seed(0)
    photo = astronaut()  # (512, 512, 3) uint8
    labels, reason = annotate(photo)
    if not labels or not labels[0].ok:
        raise SystemExit(f"no usable face in the astronaut photo: {reason}")
    lm = labels[0].landmarks  # (68, 2) pixels, corner convention

    # Work on a square crop around the face (keeps the pictures small).
    lo, hi = lm.min(0), lm.max(0)
    centre = (lo + hi) / 2 - np.array([0.0, 0.12]) * (hi - lo).max()
    side = 1.9 * (hi - lo).max()
    x0, y0 = np.round(centre - side / 2).astype(int)
    x0, y0 = max(x0, 0), max(y0, 0)
    side_i = int(min(round(side), photo.shape[1] - x0, photo.shape[0] - y0))
    crop = photo[y0:y0 + side_i, x0:x0 + side_i]
    size = 256
    from PIL import Image

    crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))
    lm_crop = (lm - np.array([x0, y0])) * (size / side_i)

    head = load_head_model("open")
    fit = fit_landmarks(head, lm_crop[None], image_size=(size, size))
    with torch.no_grad():
        out = head(shape=fit.shape, expression=fit.expression, pose=fit.pose)
        v = out.vertices
        sv = orthographic_screen_vertices(v, fit.scale, fit.translation2d)
        renderer = MeshRenderer.from_head_model(head.data, image_size=size)
        ren = renderer.render(sv, v, None, default_lighting(1))
        shaded = overlay(crop, ren.irradiance[0].clamp(0, 1) * 0.85, ren.mask[0, 0], opacity=0.85)

        cand = head.data.silhouette_candidates
        sil = silhouette_vertices(v, head.faces, candidates=None if cand is None else torch.as_tensor(cand))
        proj = project_orthographic(v, fit.scale, fit.translation2d)[0]
        marks = draw_landmarks(crop, pred=fit.landmarks2d[0], gt=lm_crop, extra=proj[sil[0]], radius=1.6)

        uvm = UVMapper.from_head_model(head.data, size=args.uv_size)
        image_t = torch.as_tensor(crop, dtype=torch.float32).permute(2, 0, 1)[None] / 255
        tex, vis = uvm.unwrap(image_t, sv)
        # Show unseen texels as a light checkerboard so the visibility mask is readable.
        S = args.uv_size
        yy, xx = np.mgrid[0:S, 0:S]
        checker = torch.as_tensor(0.75 + 0.1 * (((yy // 16) + (xx // 16)) % 2), dtype=torch.float32)
        uv_img = tex[0] * vis[0] + checker * (1 - vis[0]) * uvm.mask[0] + (1 - uvm.mask[0]) * 1.0
        unwrap = to_uint8(uv_img)

        # Render the unwrapped texture back with flat light: the visible face is reproduced.
        flat = torch.zeros(1, 9, 3)
        flat[0, 0] = float(np.sqrt(4 * np.pi))
        back = renderer.render(sv, v, tex * vis + 0.5 * (1 - vis), flat)
        rerender = overlay(crop, back.image[0].clamp(0, 1), back.mask[0, 0], opacity=1.0)

    outdir = Path(args.out)
    save_png(outdir / "example_render_astronaut.png", image_grid([marks, shaded, unwrap, rerender], columns=4))
    save_png(outdir / "example_uv_unwrap.png", unwrap)
    nme = float(fit.nme(torch.as_tensor(lm_crop[None], dtype=torch.float32))[0])
    print(f"wrote {outdir}/example_render_astronaut.png and example_uv_unwrap.png "
          f"(inner-landmark NME of the fit {nme:.3f}, visible texels {float(vis.mean() / uvm.mask.mean()):.2f})")


if __name__ == "__main__":
    main()
