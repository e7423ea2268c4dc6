"""``facetwin bench coarse``: coarse-model inference time at batch 1 (encoder + head model + projection)."""

from __future__ import annotations

import time

from facetwin.cli.bench import add_benchmark


def add_parser(subparsers) -> None:
    parser = add_benchmark(subparsers, "coarse", "coarse-model inference time (batch 1)", measure, 20)
    parser.add_argument("--model", "--checkpoint", dest="model", default="default",
                        help="coarse-encoder model file (default: the shipped one; a fresh ViT-Tiny if none)")


def _model(model_file):
    from facetwin.errors import FacetwinError
    from facetwin.models.coarse import CoarseModel, CoarseModelConfig, build_encoder, load_coarse_model

    try:
        model, meta = load_coarse_model(model_file)
        return model, "model file"
    except FacetwinError:
        if model_file not in (None, "default"):
            raise
    # No shipped model file: time a freshly initialised default encoder (same cost).
    from facetwin.headmodel import load_head_model

    head = load_head_model("open")
    return CoarseModel(build_encoder(CoarseModelConfig(), head, 50), head).eval(), "untrained default"


def measure(args) -> dict:
    import torch

    model, source = _model(getattr(args, "model", "default"))
    S = model.encoder.image_size
    x = torch.rand(1, 3, S, S)
    repeats = max(3, int(getattr(args, "repeats", 20)))
    with torch.no_grad():
        for _ in range(3):
            model(x)
        times, enc_times = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.encoder(x)
            t1 = time.perf_counter()
            model(x)
            t2 = time.perf_counter()
            enc_times.append(t1 - t0)
            times.append(t2 - t1)
    times.sort()
    enc_times.sort()
    med = times[len(times) // 2]
    return {"model": f"ViT-{model.encoder.size} {S}px", "weights": source, "threads": torch.get_num_threads(),
            "batch": 1, "ms_median": med * 1000, "encoder_ms_median": enc_times[len(enc_times) // 2] * 1000,
            "images_per_s": 1.0 / med}
