"""``facetwin bench coarse``: coarse-model inference time at batch 1 (encoder, identity head with
its face descriptor when the model has one, head model, projection), and the landmark refinement
inference adds after it (:mod:`facetwin.models.refine`)."""

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


# Batch-1 encoder + head model on 1 thread before issue #14 (BENCHMARKS.md), the speed reference.
REFERENCE_MS_1_THREAD = 18.9


def _time(model, x, repeats: int) -> tuple[float, float, float]:
    """(median ms of encoder + head model + projection, of the encoder alone, of the refinement)."""
    import torch

    from facetwin.models.refine import refine_to_landmarks

    with torch.no_grad():
        for _ in range(3):
            model(x)
        params = model.predict(x)
        # a target 1-2 px off the prediction, as the annotator's points are (the steps cost the same)
        target = model.landmarks2d(params, x.shape[-1]) + torch.randn(1, 68, 2, generator=torch.Generator().manual_seed(0))
        times, enc_times, fit_times = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.encoder(model.encoder_input(x))
            t1 = time.perf_counter()
            model(x)
            t2 = time.perf_counter()
            refine_to_landmarks(model.head_model, params, target, x.shape[-1])
            t3 = time.perf_counter()
            enc_times.append(t1 - t0)
            times.append(t2 - t1)
            fit_times.append(t3 - t2)
    return tuple(sorted(t)[len(t) // 2] * 1000 for t in (times, enc_times, fit_times))


def measure(args) -> dict:
    """Batch 1 at the requested thread count, plus 1 and 2 threads side by side (the real-time
    figures of issue #14) with the ratio to the 18.9 ms reference — on the inference backend
    (onnxruntime when installed, :meth:`CoarseModel.use_onnxruntime`), and on torch beside it."""
    import torch

    from facetwin.cli.bench import at_threads

    model, source = _model(getattr(args, "model", "default"))
    S = model.input_size  # the crop it takes (224 with an identity head: the encoder resizes to its own)
    x = torch.rand(1, 3, S, S)
    repeats = max(3, int(getattr(args, "repeats", 20)))
    model.use_onnxruntime(False)
    on_torch = at_threads(lambda: _time(model, x, repeats))
    backend = "onnxruntime" if model.use_onnxruntime() else "torch"
    by = at_threads(lambda: _time(model, x, repeats)) if backend != "torch" else on_torch
    med, enc, fit = _time(model, x, repeats)
    model.use_onnxruntime(False)
    return {"model": f"ViT-{model.encoder.size} {model.encoder.image_size}px", "input_px": S,
            "identity_head": model.identity_head is not None, "weights": source, "threads": torch.get_num_threads(),
            "backend": backend, "batch": 1, "ms_median": med, "encoder_ms_median": enc, "images_per_s": 1000.0 / med,
            "ms_1_thread": by[1][0], "ms_2_threads": by[2][0],
            "encoder_ms_1_thread": by[1][1], "encoder_ms_2_threads": by[2][1],
            "torch_ms_1_thread": on_torch[1][0], "torch_ms_2_threads": on_torch[2][0],
            "refine_ms_median": fit, "refine_ms_1_thread": by[1][2], "refine_ms_2_threads": by[2][2],
            "reference_ms_1_thread": REFERENCE_MS_1_THREAD,
            "ratio_1_thread_to_reference": by[1][0] / REFERENCE_MS_1_THREAD}
