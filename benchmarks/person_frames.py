"""How a clip's test frames differ from its training frames (docs/person.md, "What limits the gain"):
for the first 70 % (trained) and the last 30 % (tested) of the prepared frames of `facetwin evaluate
person CLIP --work W`, the base model's head yaw (degrees), the mouth opening (the annotator's inner-lip
gap 63–67 over the outer eye corners 37–46), the base model's overall / inner / boundary NME with its
per-frame β, and with one fixed β (its mean over the training frames: what one identity costs the base
model itself), and the mean distance of the per-frame β to that mean.

    python benchmarks/person_frames.py W [W ...]

Prints one JSON object per work folder: {"clip", "train": {...}, "test": {...}}; ranges are
[min, median, max]; ``mouth_wider_than_any_training_frame`` counts test frames beyond the training maximum.
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

torch.set_num_threads(1)
from facetwin.data.prepared import PreparedDataset, load_manifest  # noqa: E402
from facetwin.evaluation import person as ev  # noqa: E402
from facetwin.models import files  # noqa: E402
from facetwin.models.coarse import load_coarse_model, resolve_model_file  # noqa: E402
from facetwin.models.person import fix_shape  # noqa: E402
from facetwin.training.person_stage import predict  # noqa: E402
from facetwin.training.personalize import personalize  # noqa: E402


def spread(x: np.ndarray, digits: int) -> list[float]:
    return [round(float(np.percentile(x, q)), digits) for q in (0, 50, 100)]


def describe(work: Path, base: Path) -> dict:
    prep = work / "prepared"
    train_keys, test_keys = ev.video_split([r["key"] for r in load_manifest(prep)], 0.7)
    plain = PreparedDataset(prep, files.input_size(base), augment=False, preload=True)
    index = {k: i for i, k in enumerate(plain.keys)}
    sets = {"train": Subset(plain, [index[k] for k in train_keys]), "test": Subset(plain, [index[k] for k in test_keys])}
    with tempfile.TemporaryDirectory() as tmp:  # a stage for the training pass (head model, camera); one step, thrown away
        _, stage = personalize(prep, Path(tmp) / "x.facetwin", base, keys=train_keys, minutes=30, max_steps=1,
                               threads=1, progress=False, work_dir=Path(tmp))
    encoder = load_coarse_model(base)[0].encoder
    own = {n: predict(stage, encoder, s) for n, s in sets.items()}
    mean_beta = torch.from_numpy(own["train"]["beta"].mean(0))
    handle = fix_shape(encoder, mean_beta)
    fixed = {n: predict(stage, encoder, s) for n, s in sets.items()}
    handle.remove()
    out, mouths = {"clip": work.name}, {}
    for n, p in own.items():
        labels = p["labels"]
        mouths[n] = np.linalg.norm(labels[:, 62] - labels[:, 66], axis=1) / np.linalg.norm(labels[:, 36] - labels[:, 45], axis=1)
        e, f = ev.landmark_errors(p["landmarks"], labels), ev.landmark_errors(fixed[n]["landmarks"], labels)
        out[n] = {"frames": len(labels), "yaw_deg": spread(p["yaw_deg"], 1), "mouth_opening": spread(mouths[n], 3),
                  "base_nme": {r: round(float(e[r].mean()), 4) for r in ("overall", "inner", "boundary")},
                  "base_nme_one_fixed_beta": round(float(f["overall"].mean()), 4),
                  "beta_distance_to_training_mean": round(float(np.linalg.norm(p["beta"] - mean_beta.numpy(), axis=1).mean()), 2)}
    out["test"]["mouth_wider_than_any_training_frame"] = int((mouths["test"] > mouths["train"].max()).sum())
    return out


if __name__ == "__main__":
    base = resolve_model_file("default")
    for w in sys.argv[1:]:
        print(json.dumps(describe(Path(w), base)), flush=True)
