"""The README's video pictures, from public-domain / synthetic inputs only (no research data):

    python scripts/video_pictures.py [--work /tmp/facetwin-video-pictures]

* ``docs/images/video_overlay.png`` — frames of ``facetwin reconstruct`` 's overlay MP4 on a clip
  made from scikit-image's astronaut photo (a window drifting and zooming over the face);
* ``docs/images/animate_side_by_side.png`` — frames of ``facetwin animate`` 's side-by-side MP4:
  the driver is the open head model itself, rendered opening its jaw, smiling and raising its
  brows; the source is the astronaut.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def astronaut_clip(path: Path, n: int = 40) -> None:
    from skimage import data

    from facetwin.data.video import VideoWriter

    img = data.astronaut()
    with VideoWriter(path, 25) as w:
        for i in range(n):
            s = 300 - 2 * i  # zoom in a little
            x0, y0 = 70 + i, 10 + i // 2
            w.write(cv2.resize(np.ascontiguousarray(img[y0:y0 + s, x0:x0 + s]), (320, 320), interpolation=cv2.INTER_AREA))


def driver_clip(path: Path, n: int = 60) -> None:
    """The open head model, grey-shaded, acting: jaw open, smile, brows up, a small head turn."""
    from facetwin.data.video import VideoWriter
    from facetwin.headmodel import load_head_model
    from facetwin.rendering.visualize import render_geometry

    hm = load_head_model("open")
    names = list(hm.data.expression_names)
    S = 320
    with VideoWriter(path, 25) as w:
        for i in range(n):
            ph = i / (n - 1)
            e = torch.zeros(1, hm.n_expr)
            bump = lambda a, b: float(np.clip(np.sin(np.pi * (ph - a) / (b - a)), 0, 1)) if a <= ph <= b else 0.0  # noqa: E731
            e[0, names.index("jawOpen")] = 0.9 * bump(0.0, 0.4)
            for k in ("mouthSmileLeft", "mouthSmileRight"):
                e[0, names.index(k)] = 0.9 * bump(0.35, 0.75)
            e[0, names.index("browInnerUp")] = 1.0 * bump(0.6, 1.0)
            for k in ("eyeWideLeft", "eyeWideRight"):
                e[0, names.index(k)] = 0.8 * bump(0.6, 1.0)
            pose = torch.zeros(1, 5, 3)
            pose[0, 0, 1] = 0.25 * np.sin(2 * np.pi * ph)
            with torch.no_grad():
                v = hm(expression=e, pose=pose).vertices[0]
            s = 0.7 * S / 0.25  # pixels per metre: the whole head in the frame
            img, a = render_geometry(v, hm.faces, s, torch.tensor([S / 2, S / 2 + 0.04 * s]), S)
            bg = np.full((S, S, 3), 90, np.uint8)
            w.write((bg * (1 - a[..., None]) + img * a[..., None]).astype(np.uint8))


def frames_of(path: Path, idx: list[int]) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i in idx:
            out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        i += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/facetwin-video-pictures")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from skimage import data

    astro = work / "astronaut.png"
    Image.fromarray(data.astronaut()).save(astro)
    clip, drv = work / "astronaut_clip.mp4", work / "head_model_driver.mp4"
    astronaut_clip(clip)
    driver_clip(drv)
    fac = [sys.executable, "-m", "facetwin"]
    subprocess.run(fac + ["reconstruct", str(clip), "--out", str(work / "rec"), "--smooth"], check=True)
    subprocess.run(fac + ["animate", "--source", str(astro), "--driver", str(drv), "--out", str(work / "anim")], check=True)
    ov = frames_of(work / "rec" / "astronaut_clip_overlay.mp4", [0, 20, 39])
    Image.fromarray(np.concatenate(ov, 1)).save(ROOT / "docs" / "images" / "video_overlay.png")
    sbs = frames_of(work / "anim" / "astronaut_by_head_model_driver_side_by_side.mp4", [0, 12, 33, 50])
    gap = np.full((sbs[0].shape[0], 8, 3), 255, np.uint8)
    pic = np.concatenate([np.concatenate([sbs[0], gap, sbs[1]], 1), np.concatenate([sbs[2], gap, sbs[3]], 1)], 0)
    Image.fromarray(pic).save(ROOT / "docs" / "images" / "animate_side_by_side.png")
    print("wrote docs/images/video_overlay.png and docs/images/animate_side_by_side.png")


if __name__ == "__main__":
    main()
