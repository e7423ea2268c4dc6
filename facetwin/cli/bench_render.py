"""``facetwin bench render``: time the differentiable renderer on the open head model.

The figure that matters for training: one textured, SH-lit render of a batch of posed heads
(rasterise + UV/normal interpolation + albedo texture look-up + SH shading), then the backward
pass of a photometric-style loss to vertices, albedo texture and lighting.
"""

from __future__ import annotations

from facetwin.cli.bench import add_benchmark, time_ms


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


def measure(args) -> dict:
    import torch

    from facetwin.rendering import rasterize

    batch = getattr(args, "batch", 8)
    sizes = getattr(args, "sizes", [128, 224])
    repeats = max(1, getattr(args, "repeats", 10))
    threads = getattr(args, "threads", 2)
    torch.set_num_threads(threads)
    import os

    results: dict = {"batch": batch, "threads": threads, "mesh": None, "repeats": repeats,
                     "load_average_1min": round(os.getloadavg()[0], 2),
                     "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "timing": "*_ms median wall, *_min_ms best wall, *_cpu_ms median process CPU (all threads)"}
    from facetwin.rendering import backend_moderngl

    gl = getattr(args, "moderngl", True) and backend_moderngl.available()
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
        row = {"covered_pixels_per_image": int(fr.pixel_index.numel() // batch)}
        for name, fn in (("rasterize", raster_only), ("forward", forward), ("forward_backward", forward_backward)):
            row[f"{name}_ms"], row[f"{name}_min_ms"], row[f"{name}_cpu_ms"] = time_ms(fn, repeats)
        if gl:
            def raster_gl():
                with torch.no_grad():
                    rasterize(screen(vertices, scale, translation), renderer.faces, size, cull_backfaces=True, backend="moderngl")

            ids_gl = rasterize(screen(vertices, scale, translation), renderer.faces, size, cull_backfaces=True, backend="moderngl").triangle_ids
            row["rasterize_moderngl_ms"], row["rasterize_moderngl_min_ms"], _ = time_ms(raster_gl, repeats)
            row["moderngl_agreement"] = round(float((ids_gl == fr.triangle_ids).float().mean()), 5)
        results[f"{size}"] = row
    return results


def add_parser(subparsers) -> None:
    parser = add_benchmark(subparsers, "render", "time the differentiable renderer (head model, batch 8, 128² and 224²)", measure, 10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="image sizes (square)")
    parser.add_argument("--no-moderngl", dest="moderngl", action="store_false", help="skip the optional OpenGL visibility figure")
