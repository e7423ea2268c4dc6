"""``facetwin bench detail``: coarse + detail inference at batch 1 (detection excluded): the coarse
encoder and head model, unwrapping the crop into the detail UV layout, the tension T_UV, the
detail network (the MAE by default), the detail normal map and the displaced mesh."""

from __future__ import annotations

import time

from facetwin.cli.bench import add_benchmark


def add_parser(subparsers) -> None:
    parser = add_benchmark(subparsers, "detail", "coarse + detail inference time (batch 1, detection excluded)", measure, 20)
    parser.add_argument("--detail", default="default",
                        help="detail model file (default: the shipped one; a fresh default detail MAE if none)")


def _model(detail_file):
    from facetwin.errors import FacetwinError
    from facetwin.models.coarse import load_coarse_model
    from facetwin.models.detail import DetailModel, DetailModelConfig, build_network, load_detail_model

    try:
        return load_detail_model(detail_file, albedo=False)[0], "model file"
    except FacetwinError:
        if detail_file not in (None, "default"):
            raise
    cfg = DetailModelConfig()
    coarse, _ = load_coarse_model()
    net = build_network("mae", cfg.mae, cfg.map_size)
    return DetailModel(coarse, net, cfg.map_size, cfg.image_size, highpass=cfg.highpass).eval(), "untrained default"


def _time(model, x, repeats: int) -> tuple[float, float, float, float]:
    """(median wall ms of coarse + detail, median wall ms of the coarse part alone, best wall ms,
    median process CPU ms of coarse + detail). On a shared machine the best wall time and the CPU
    time (summed over threads) are the steadier figures."""
    import statistics

    import torch

    with torch.no_grad():
        for _ in range(3):
            model(x)
        total, coarse, cpu = [], [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            geo = model.coarse_geometry(x)
            t1 = time.perf_counter()
            model.maps(x, geo)
            t2, c2 = time.perf_counter(), time.process_time()
            coarse.append(t1 - t0)
            total.append(t2 - t0)
            cpu.append(c2 - c0)
    m = lambda v: 1000 * statistics.median(v)  # noqa: E731
    return m(total), m(coarse), 1000 * min(total), m(cpu)


def _time_pipelined(model, x, frames: int, refine: bool = False) -> float:
    """Wall ms per frame of ``frames`` frames split as the video path splits them
    (:func:`facetwin.inference.video.reconstruct_video` with details): the coarse pass of frame t+1
    in a second thread (:func:`facetwin.inference.threads.prefetch`) beside the detail pass of frame t,
    one torch thread each (2 cores busy). Throughput, not latency: each frame still takes the serial
    time from crop to D. ``refine``: the coarse stage also refines onto 68 points, as the video
    path does by default (:mod:`facetwin.models.refine`)."""
    import torch

    from facetwin.inference.threads import prefetch
    from facetwin.models.refine import refine_to_landmarks

    with torch.no_grad():  # a target 1-2 px off the prediction, as the annotator's points are
        target = model.coarse.landmarks2d(model.coarse.predict(x), x.shape[-1])
        target = target + torch.randn(target.shape, generator=torch.Generator().manual_seed(0))

    def coarse(n):
        with torch.no_grad():  # grad mode is per thread
            for _ in range(n):
                params = model.coarse.predict(x)
                if refine:
                    params = refine_to_landmarks(model.coarse.head_model, params, target, x.shape[-1])[0]
                yield model.coarse_geometry(x, params)

    def run(n):
        with torch.no_grad():
            for geo in prefetch(coarse(n), 1):
                model.maps(x, geo)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(3)
        t0 = time.perf_counter()
        run(frames)
        return 1000 * (time.perf_counter() - t0) / frames
    finally:
        torch.set_num_threads(before)


def measure(args) -> dict:
    """Batch 1 at the requested threads, plus 1 and 2 threads side by side, on 2 threads with
    one fixed β (what a person model runs: no face descriptor per frame), and frames streamed
    through the video path's two-stage pipeline (both, on 2 cores) — on the inference backend
    (onnxruntime for the coarse encoder, the descriptor and the detail network when installed), and on torch beside it."""
    import torch

    from facetwin.cli.bench import at_threads
    from facetwin.models.person import fix_shape

    model, source = _model(getattr(args, "detail", "default"))
    C = model.image_size
    x = torch.rand(1, 3, C, C)
    repeats = max(3, int(getattr(args, "repeats", 20)))
    coarse = model.coarse
    coarse.use_onnxruntime(False)
    model.use_onnxruntime(False)
    on_torch = at_threads(lambda: _time(model, x, repeats))
    backend = "onnxruntime" if coarse.use_onnxruntime() and model.use_onnxruntime() else "torch"
    by = at_threads(lambda: _time(model, x, repeats)) if backend != "torch" else on_torch
    with torch.no_grad():
        beta = coarse.predict(x).shape[0]
    fixed = fix_shape(coarse.encoder, beta)
    frames = 2 * repeats
    try:
        person = at_threads(lambda: _time(model, x, repeats), threads=(2,))[2]
        person_piped = _time_pipelined(model, x, frames)
    finally:
        fixed.remove()
    piped = _time_pipelined(model, x, frames)
    piped_refined = _time_pipelined(model, x, frames, refine=True)
    ms, coarse_ms, best_ms, cpu_ms = _time(model, x, repeats)
    coarse.use_onnxruntime(False)
    model.use_onnxruntime(False)
    net = model.network
    return {"network": f"detail {model.kind} {model.map_size}² maps, {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters",
            "weights": source, "crop": C, "threads": torch.get_num_threads(), "batch": 1, "backend": backend,
            "ms_median": ms, "coarse_ms_median": coarse_ms, "detail_ms_median": ms - coarse_ms, "fps": 1000.0 / ms,
            "ms_best": best_ms, "fps_best": 1000.0 / best_ms, "cpu_ms_median": cpu_ms,
            "ms_1_thread": by[1][0], "ms_2_threads": by[2][0], "fps_1_thread": 1000.0 / by[1][0], "fps_2_threads": 1000.0 / by[2][0],
            "detail_ms_2_threads": by[2][0] - by[2][1], "ms_best_2_threads": by[2][2], "fps_best_2_threads": 1000.0 / by[2][2],
            "cpu_ms_median_2_threads": by[2][3],
            "ms_2_threads_person": person[0], "fps_2_threads_person": 1000.0 / person[0], "fps_best_2_threads_person": 1000.0 / person[2],
            "pipelined": "2 stages x 1 thread: coarse of frame t+1 beside details of frame t (the video path); per-frame throughput",
            "ms_per_frame_2_threads_pipelined": piped, "fps_2_threads_pipelined": 1000.0 / piped,
            "fps_2_threads_pipelined_person": 1000.0 / person_piped,
            "fps_2_threads_pipelined_refined": 1000.0 / piped_refined,
            "torch_ms_1_thread": on_torch[1][0], "torch_ms_2_threads": on_torch[2][0], "torch_fps_2_threads": 1000.0 / on_torch[2][0]}
