"""Regenerate the README pictures of the export commands in docs/images/:

* ``demo_page.png``      — headless Chromium screenshot of ``facetwin demo``'s page
* ``viewer.png``         — the page of ``facetwin view astronaut.glb`` (sliders moved by the page's animation)
* ``export_blender.png`` — Debian's Blender importing ``astronaut.glb`` (Cycles render of frame 1)
* ``export_views.png``   — the textured head turned −50°…+50° (from the demo)
* ``export_textures.png``— albedo / photo where seen / material texture in the UV layout

    python scripts/make_export_pictures.py   # needs `make tools` (blender, chromium)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader", "--hide-scrollbars"]


def screenshot(page: Path, out: Path, size=(1200, 900), budget_ms=9000) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                        f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", page.as_uri()], check=True,
                       capture_output=True, timeout=300)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="facetwin-pictures-"))
    demo = work / "demo"
    subprocess.run([sys.executable, "-m", "facetwin", "demo", "--out", str(demo)], check=True, cwd=ROOT)
    screenshot(demo / "index.html", IMAGES / "demo_page.png", (1200, 1150))
    subprocess.run([sys.executable, "-m", "facetwin", "view", str(demo / "astronaut.glb"), "--out", str(work / "view.html")],
                   check=True, cwd=ROOT)
    screenshot(work / "view.html", IMAGES / "viewer.png", (1100, 720), budget_ms=2500)
    subprocess.run(["blender", "--background", "--factory-startup", "--python", str(ROOT / "scripts/blender/inspect_import.py"),
                    "--", str(demo / "astronaut.glb"), "--render", str(IMAGES / "export_blender.png")], check=True,
                   capture_output=True, timeout=900)
    Image.open(demo / "astronaut_views.png").save(IMAGES / "export_views.png", optimize=True)
    tiles = [np.asarray(Image.open(demo / f"astronaut_{k}.png").convert("RGB").resize((256, 256), Image.LANCZOS))
             for k in ("albedo", "photo", "texture")]
    Image.fromarray(np.concatenate(tiles, 1)).save(IMAGES / "export_textures.png", optimize=True)
    for name in ("demo_page.png", "viewer.png"):  # screenshots as palette PNGs: a fraction of the size
        p = IMAGES / name
        Image.open(p).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(p, optimize=True)
    print(f"pictures in {IMAGES}; work files in {work}")


if __name__ == "__main__":
    main()
