"""Base vs person model on held-out frames, from a kept ``evaluate person --work`` folder.

    python benchmarks/person_picture.py WORK --out docs/images/person_d6.png [--background none]
    python benchmarks/person_picture.py WORK --priors --out docs/images/person_priors.png

WORK is the ``--work`` folder of ``facetwin evaluate person VIDEO --work WORK``: its
``prepared/`` crops and ``fold0.facetwin``. The test frames are the last 30 % in time (the
protocol's split); columns: the annotator's labels, the base model, the person model (the
person's β). ``--background none`` draws meshes and points on grey, without the frames' pixels
(the research clips must not be copied into the repository). ``--priors``: base vs person on the
test frame whose pasted occluder (``evaluate person``'s) hides most points, and on the most turned
test frame (|yaw| above 20° by the base model), as ``evaluate person --priors-picture``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from facetwin.geometry.rotation import head_yaw


@torch.no_grad()
def predictions(coarse, dataset) -> dict:
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    geo = coarse(images)
    return {"landmarks": coarse.image_landmarks(geo, "static").numpy(),
            "labels": torch.stack([dataset[i]["landmarks"] for i in range(len(dataset))]).numpy(),
            "vertices": geo.vertices.numpy(), "scale_px": geo.scale_px.numpy(), "translation_px": geo.translation_px.numpy(),
            "yaw_deg": np.degrees(head_yaw(geo.params.pose).numpy())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--background", choices=["photo", "none"], default="none")
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--priors", action="store_true", help="the occluded / turned test frames instead")
    args = ap.parse_args()

    from facetwin.cli.evaluate_person import comparison_picture
    from facetwin.evaluation.person import video_split
    from facetwin.data.prepared import PreparedDataset
    from facetwin.models.coarse import DEFAULT_MODEL_FILE, load_coarse_model
    from facetwin.models.person import load_person
    from facetwin.outputs import write_image

    ds = PreparedDataset(args.work / "prepared", 128, augment=False, preload=True)
    _, test_keys = video_split(list(ds.keys))
    index = {k: i for i, k in enumerate(ds.keys)}
    test = Subset(ds, [index[k] for k in test_keys])
    base, _ = load_coarse_model()
    person, _ = load_coarse_model()
    load_person(args.work / "fold0.facetwin", person.encoder, DEFAULT_MODEL_FILE)
    preds = {"base": predictions(base, test), "person": predictions(person, test)}
    if args.priors:
        from facetwin.cli.evaluate_person import priors_picture
        from facetwin.evaluation.person import Occluded, strong_turns

        occluded = Occluded(test)
        occ = {"base": predictions(base, occluded), "person": predictions(person, occluded)}
        pic = priors_picture(test, preds, occluded, occ, strong_turns(preds["base"]["yaw_deg"]), base.head_model.faces,
                             photo=args.background == "photo")
    else:
        pic = comparison_picture(test, preds, base.head_model.faces, rows=args.rows, photo=args.background == "photo")
    write_image(args.out, np.ascontiguousarray(pic))
    print(args.out)


if __name__ == "__main__":
    main()
