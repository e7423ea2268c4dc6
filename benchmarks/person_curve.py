"""Test-NME curve of one person transfer (docs/person.md, "What limits the gain"): personalise on
the first 70 % of a clip's prepared frames for a fixed number of steps, early stopping off, and
every ``--every`` steps measure the overall NME on the last 30 % (with the person's trained β, as
the person model uses it, and with the adapted encoder's per-frame β) beside the held-out split's
NME that early stopping reads, and the same on the training frames (how far the fit has gone).

    python benchmarks/person_curve.py WORK NAME --steps 150 [--lr 1e-3] [--augment] [--min-reliability 0.6]

WORK holds ``prepared/`` (e.g. the ``--work`` folder of ``facetwin evaluate person VIDEO``);
the run goes to ``WORK/curve_NAME`` and prints one JSON line per measurement, then a summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import Subset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("name")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--augment", action="store_true")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--adapter-width", type=int, default=32)
    ap.add_argument("--min-reliability", type=float, default=0.0)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from facetwin.data.prepared import PreparedDataset, load_manifest
    from facetwin.evaluation import person as ev
    from facetwin.evaluation.nme import per_image_nme
    from facetwin.models.coarse import load_coarse_model, resolve_model_file
    from facetwin.training import person_stage as ps
    from facetwin.training.personalize import personalize

    from facetwin.models import files

    prep = args.work / "prepared"
    train_keys, test_keys = ev.video_split([r["key"] for r in load_manifest(prep)], 0.7)
    base = resolve_model_file("default")
    plain = PreparedDataset(prep, files.input_size(base), augment=False, preload=True)
    index = {k: i for i, k in enumerate(plain.keys)}
    test, train = (Subset(plain, [index[k] for k in ks]) for ks in (test_keys, train_keys))
    nme = lambda o: float(per_image_nme(o["landmarks"], o["labels"])["overall"].mean())  # noqa: E731
    curve = []
    evaluate = ps.PersonStage.evaluate

    def tracked(self, model, step):
        r = evaluate(self, model, step)
        if step % args.every == 0 or step >= self.cfg.run.steps:
            person, fit = nme(ps.predict(self, self.model, test)), nme(ps.predict(self, self.model, train))
            self._per_frame = True  # the adapted encoder's own β per frame
            try:
                per_frame = nme(ps.predict(self, self.model, test))
            finally:
                self._per_frame = False
            curve.append({"step": step, "held_out": r and r["val_nme"], "test": person, "test_per_frame_beta": per_frame,
                          "train": fit})
            print(json.dumps(curve[-1]), flush=True)
        return r

    ps.PersonStage.evaluate = tracked
    settings = ps.PersonSettings
    ps.PersonSettings = lambda **kw: settings(**{**kw, "patience": 10 ** 9})  # early stopping off
    t0 = time.time()
    out = args.work / f"curve_{args.name}"
    _, stage = personalize(prep, out / "person.facetwin", base, keys=train_keys, minutes=600, max_steps=args.steps,
                           adapter_width=args.adapter_width, batch_size=args.batch_size, threads=1, work_dir=out,
                           progress=False, lr=args.lr, augment=args.augment, min_reliability=args.min_reliability)
    base_nme = nme(ps.predict(stage, load_coarse_model(base)[0].encoder, test))
    best = min(curve, key=lambda c: c["test"])
    print(json.dumps({"name": args.name, "base": base_nme, "final": curve[-1]["test"], "final_step": curve[-1]["step"],
                      "best": best["test"], "best_step": best["step"], "seconds": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
