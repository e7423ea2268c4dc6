#!/usr/bin/env python
"""The trained detail networks on the synthetic known answer (issue #16), zero-shot: no fitting.

    python benchmarks/detail_known_answer.py [MODEL ...] [--renders 8] [--json]

Renders ``--renders`` brow raises of the open head model (strength 0.6–1, yaw within ±15°, 224²
renders, 128² maps: the shipped networks' sizes) with forehead furrows placed by the tension
(docs/detail.md "Synthetic known-answer data"), unwraps each render into the detail layout as
inference does, runs each model file's network on it (the MAE with the render's T_UV), takes the
fine part as inference does (the file's ``highpass``) and scores D against the truth on the
forehead: Pearson correlation, mean angle of the detail normals to the true ones, and the same
angle for D = 0. The renders are untextured grey shading, unlike the photos the networks were
trained on. Default models: the shipped teacher and MAE.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def score(model_file, gen, sample) -> dict:
    from facetwin.evaluation.synthetic_details import score_displacement
    from facetwin.models.detail import network_kind, read_detail_network
    from facetwin.rendering.detail_maps import highpass_map

    net, meta = read_detail_network(model_file)
    highpass = float((meta.get("inference") or {}).get("highpass", 0.0))
    mask = gen.mapper.mask
    with torch.no_grad():
        tex, vis = gen.mapper.unwrap(sample.image, sample.screen_vertices)
        d = net(tex, vis) if network_kind(net) == "unet" else net(tex, vis, sample.tension_map)
        d = highpass_map(d, mask.to(d), highpass) * mask
    out = score_displacement(d, sample, gen.mapper, gen.forehead)
    on = (gen.forehead.expand_as(d) > 0.5) & (mask.expand_as(d) > 0)
    out.update(model=Path(model_file).name, format=meta.get("format"), highpass=highpass,
               d_forehead_mm=float(1000 * d[on].abs().mean()), truth_forehead_mm=float(1000 * sample.displacement[on].abs().mean()))
    return out


def main(argv=None) -> int:
    from facetwin.headmodel import load_head_model
    from facetwin.evaluation.synthetic_details import SyntheticDetails
    from facetwin.models.detail import DEFAULT_MODEL_FILE, DEFAULT_TEACHER_FILE

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=[str(DEFAULT_TEACHER_FILE), str(DEFAULT_MODEL_FILE)])
    ap.add_argument("--renders", type=int, default=8)
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    gen = SyntheticDetails(load_head_model("open"), image_size=224, map_size=128)
    with torch.no_grad():
        sample = gen.brow_raise(batch=args.renders, seed=args.seed, strength=(0.6, 1.0))
    rows = [score(m, gen, sample) for m in args.models]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['model']}: correlation {r['correlation']:.3f}, normal angle {r['angle_deg']:.2f} deg "
                  f"(D = 0: {r['angle_coarse_deg']:.2f}), |D| on the forehead {r['d_forehead_mm']:.3f} mm "
                  f"(truth {r['truth_forehead_mm']:.3f} mm)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
