"""Timing of dlib's face descriptor port and of the identity loss (CPU, batch 8).

    python benchmarks/bench_identity.py [--threads 2] [--batch 8] [--repeats 10]

Prints one JSON object: forward (no grad) and forward+backward (gradient w.r.t. the input)
best wall-clock and median CPU milliseconds of ``DlibFaceDescriptor`` on (B, 3, 150, 150) chips, and of
``identity_loss`` (alignment of both images + two descriptor passes + backward) on 224² crops.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from facetwin.losses.identity import identity_loss
from facetwin.networks.face_recognition import load_face_descriptor


def _ms(fn, repeats: int) -> tuple[float, float]:
    """(best wall-clock ms, median process CPU ms). On a shared machine the CPU time (summed
    over threads) is the steadier figure; uncontended wall time is about CPU time / threads."""
    fn()
    fn()
    best, cpu = float("inf"), []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return round(best * 1000, 1), round(sorted(cpu)[len(cpu) // 2] * 1000, 1)


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_face_descriptor()
    gen = torch.Generator().manual_seed(0)
    chips = torch.rand(args.batch, 3, 150, 150, generator=gen)

    def forward():
        with torch.no_grad():
            model(chips)

    def forward_backward():
        x = chips.clone().requires_grad_(True)
        model(x).sum().backward()

    crops = torch.rand(args.batch, 3, 224, 224, generator=gen)
    # a plausible 68-point layout filling the crop like the training crops do
    base = torch.stack(torch.meshgrid(torch.linspace(60, 164, 17), torch.linspace(70, 190, 4), indexing="xy"), -1)
    landmarks = base.reshape(-1, 2)[:68][None].repeat(args.batch, 1, 1)

    def loss_forward_backward():
        pred = crops.clone().requires_grad_(True)
        identity_loss(pred, crops, landmarks, model).sum().backward()

    out = {"threads": args.threads, "batch": args.batch, "load_average_1min": round(os.getloadavg()[0], 2)}
    for name, fn in (
        ("descriptor_forward", forward),
        ("descriptor_forward_backward", forward_backward),
        ("identity_loss_forward_backward", loss_forward_backward),
    ):
        out[f"{name}_ms"], out[f"{name}_cpu_ms"] = _ms(fn, args.repeats)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
