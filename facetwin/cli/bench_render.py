"""``facetwin bench render``: time the differentiable renderer on the open head model.

The figure that matters for training: one textured, SH-lit render of a batch of posed heads
(rasterise + UV/normal interpolation + albedo texture look-up + SH shading), then the backward
pass of a photometric-style loss to vertices, albedo texture and lighting.
"""

from __future__ import annotations

import statistics
import time

from facetwin.cli.main import add_json_flag


def _scene(batch: int, size: int, uv_size: int = 256):
    import torch

    from facetwin.geometry.camera import orthographic_screen_vertices
    from facetwin.headmodel import load_head_model
    from facetwin.rendering import MeshRenderer, default_lighting

    head = load_head_model("open")
    g = torch.Generator().manual_seed(0)
    pose = torch.zeros(batch, 5, 3)
    pose[:, 0] = torch.randn(batch, 3, generator=g) * 0.25  # head turns up to ~±30°
    with torch.no_grad():
        vertices = head(shape=torch.randn(batch, head.n_shape, generator=g) * 0.5, pose=pose).vertices
    centre = vertices.mean(1)
    scale = torch.full((batch,), size / 0.26)  # the head fills the crop like a face crop
    translation = size / 2 + torch.stack([-centre[:, 0], centre[:, 1]], -1) * scale[:, None]
    renderer = MeshRenderer.from_head_model(head.data, image_size=size)
    albedo = torch.rand(batch, 3, uv_size, uv_size, generator=g) * 0.3 + 0.4
    lighting = default_lighting(batch)
    target = torch.rand(batch, 3, size, size, generator=g)
    return renderer, vertices, scale, translation, albedo, lighting, target, orthographic_screen_vertices


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def measure(args) -> dict:
    import torch

    from facetwin.rendering import rasterize

    batch = getattr(args, "batch", 8)
    sizes = getattr(args, "sizes", [128, 224])
    repeats = max(1, getattr(args, "repeats", 10))
    threads = getattr(args, "threads", 2)
    torch.set_num_threads(threads)
    results: dict = {"batch": batch, "threads": threads, "mesh": None, "repeats": repeats}
    for size in sizes:
        renderer, vertices, scale, translation, albedo, lighting, target, screen = _scene(batch, size)
        results["mesh"] = f"open head model, {vertices.shape[1]} vertices, {renderer.faces.shape[0]} triangles"

        def raster_only():
            with torch.no_grad():
                rasterize(screen(vertices, scale, translation), renderer.faces, size, cull_backfaces=True)

        def forward():
            with torch.no_grad():
                renderer.render(screen(vertices, scale, translation), vertices, albedo, lighting)

        def forward_backward():
            v = vertices.clone().requires_grad_()
            a = albedo.clone().requires_grad_()
            light = lighting.clone().requires_grad_()
            out = renderer.render(screen(v, scale, translation), v, a, light)
            loss = ((out.image - target).abs() * out.mask).mean()
            loss.backward()

        fr = rasterize(screen(vertices, scale, translation), renderer.faces, size, cull_backfaces=True)
        results[f"{size}"] = {
            "rasterize_ms": round(_time(raster_only, repeats), 2),
            "forward_ms": round(_time(forward, repeats), 2),
            "forward_backward_ms": round(_time(forward_backward, repeats), 2),
            "covered_pixels_per_image": int(fr.pixel_index.numel() // batch),
        }
    return results


def run(args) -> dict:
    return measure(args)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("render", help="time the differentiable renderer (head model, batch 8, 128² and 224²)")
    add_json_flag(parser)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions per figure (median reported)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="image sizes (square)")
    parser.set_defaults(func=run)
