"""The refinement's expression prior against landmark accuracy and render likeness, on training
data (HELEN-train, first 400 images; identities/train, first 100 people) — how the default of
``RefineSettings.expression_prior`` was chosen (docs/refine.md, BENCHMARKS.md).

    python benchmarks/refine_prior.py [--priors 3e-3 1e-2 3e-2 0.1 0.3 1.0]

One line per prior: render distance (dlib descriptor, photo ↔ composited render) and mean-face
distance on identities/train, HELEN-train NME overall / boundary / large turns. Three steps, as
the sweep in the docs was run (the default takes two: the same fit to 2e-5).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--priors", type=float, nargs="*", default=[3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0])
    args = ap.parse_args()
    import torch

    from facetwin.evaluation.landmarks import evaluate_folder
    from facetwin.evaluation.likeness import evaluate_likeness
    from facetwin.models.coarse import load_coarse_model
    from facetwin.models.refine import RefineSettings
    from facetwin.paths import shared_data_dir

    torch.set_num_threads(2)
    root = shared_data_dir()
    model, meta = load_coarse_model("default")
    for prior in [None, *args.priors]:
        cfg = None if prior is None else RefineSettings(expression_prior=prior, iterations=3)
        like = evaluate_likeness(model, root / "identities" / "train", progress=False, refine=cfg, max_people=100)
        helen = evaluate_folder(model, root / "train" / "helen-train", progress=False, crop_rule=meta["inference"]["crop"],
                                refine=cfg, limit=400)
        print(f"prior {prior}: render {like['render_distance']:.4f} mean face {like['mean_face_render_distance']:.4f} | "
              f"HELEN-train {helen['nme_overall']:.4f} boundary {helen['nme_boundary']:.4f} "
              f"large turns {helen['by_pose']['large']['overall']:.4f}", flush=True)


if __name__ == "__main__":
    main()
