"""``facetwin demo [--out DIR]``: the whole job on the photo shipped in the package.

Reconstructs ``facetwin/assets/astronaut.png`` (public domain) with the shipped coarse model and
writes every result file (docs/outputs.md), pictures (input, overlay, textured render, rotated
views) and ``index.html``: one offline page with those pictures and the face in 3D playing a
short expression animation (sliders per expression). The last line printed is the page's path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetwin.cli.main import add_json_flag

DEMO_PHOTO = Path(__file__).resolve().parent.parent / "assets" / "astronaut.png"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="reconstruct the bundled photo and write an offline page with the results",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    add_json_flag(p)
    p.set_defaults(func=run)


def demo_animation(names, expression: np.ndarray, pose: np.ndarray, seconds: float = 4.0, fps: float = 25.0):
    """A short clip around the reconstructed face: smile, jaw open, blink, brows up, back, with
    a gentle head turn. Returns (times (T,), weights (T, K), rotations (T, 5, 3))."""
    names = list(names)
    t = np.arange(int(seconds * fps) + 1) / fps
    base = np.asarray(expression, np.float32).reshape(-1)[: len(names)]
    w = np.tile(base, (len(t), 1))

    def bump(centre, width):  # smooth 0 → 1 → 0 around ``centre`` seconds
        x = np.clip(1 - np.abs(t - centre) / width, 0, 1)
        return 0.5 - 0.5 * np.cos(np.pi * x)

    moves = [(["mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight"], 0.8, 0.7, 0.9),
             (["jawOpen", "mouthFunnel"], 1.9, 0.6, 0.7),
             (["eyeBlinkLeft", "eyeBlinkRight"], 2.6, 0.2, 1.0),
             (["browInnerUp", "browOuterUpLeft", "browOuterUpRight", "eyeWideLeft", "eyeWideRight"], 3.25, 0.55, 0.9)]
    for keys, centre, width, amount in moves:
        b = bump(centre, width)
        for k in keys:
            if k in names:
                i = names.index(k)
                w[:, i] = w[:, i] + (amount - w[:, i]) * b
    rot = np.tile(np.asarray(pose, np.float32).reshape(1, 5, 3), (len(t), 1, 1))
    rot[:, 1, 1] += 0.25 * np.sin(2 * np.pi * t / seconds)  # neck turn
    return t.astype(np.float32), np.clip(w, 0, 1).astype(np.float32), rot


def run(args) -> dict:
    import io
    import time

    from PIL import Image

    from facetwin.data.io import load_image
    from facetwin.export import write_result_files
    from facetwin.export.pictures import render_in_photo, textured_views
    from facetwin.export.result import _head_data
    from facetwin.inference.reconstructor import DEFAULT_CHECKPOINT, FaceTwin
    from facetwin.outputs import ensure_dir, write_image
    from facetwin.rendering.visualize import image_grid
    from facetwin.viewer import Section, write_page

    start = time.perf_counter()
    out = ensure_dir(args.out)
    image, _ = load_image(DEMO_PHOTO)
    write_image(out / "astronaut.png", image)
    ft = FaceTwin("default", detail="default")  # the shipped detail MAE when there is one
    res = ft.reconstruct(image)
    data = _head_data("open")
    p = res.params
    clip = demo_animation(data.expression_names, p["expression"], p["pose"])
    saved = write_result_files(res, out, "astronaut", animation=clip)  # the GLB carries the clip
    tex = saved["textures"]
    render = render_in_photo(data, res.vertices, res.scale, res.translation, image, tex["albedo"], p.get("light"))
    yaws = (-50.0, -25.0, 0.0, 25.0, 50.0)
    views = textured_views(data, p, tex["texture"], yaws, size=256)
    write_image(out / "astronaut_render.png", render)
    write_image(out / "astronaut_views.png", image_grid(views, pad=0))
    glb = Path(saved["glb"])

    def png(a):  # pictures inside the page (JPEG where there is no alpha: small and fast)
        buf = io.BytesIO()
        if a.shape[-1] == 4:
            Image.fromarray(a).save(buf, format="PNG", compress_level=1)
        else:
            Image.fromarray(a).save(buf, format="JPEG", quality=90)
        return buf.getvalue()

    pose = p["pose"]
    sections = [
        Section("the photo and its reconstruction", [("input photo", png(image)), ("mesh and landmarks over the photo", png(saved["overlay_image"])),
                                                      ("textured render: albedo model × estimated light", png(render))]),
        Section("turning the head (photo texture where seen, albedo elsewhere)", [(f"{y:+.0f}°", png(v)) for y, v in zip(yaws, views)]),
        Section("textures (UV layout of the open head model)", [("albedo", png(tex["albedo"])), ("photo where visible", png(tex["photo"])),
                                                                ("material texture", png(tex["texture"]))]),
    ]
    if res.detail is not None:
        from facetwin.cli.animate import detail_expression_tiles, source_of

        tiles = detail_expression_tiles(ft, source_of(res, "astronaut"), size=256, with_input=False)
        strip = np.concatenate([t for _, t in tiles], 1)
        write_image(out / "astronaut_details.png", strip)
        sections.append(Section("details: wrinkles that follow the expression (grey shading, so the geometry shows)",
                                [(label, png(t)) for label, t in tiles],
                                text="D from the detail MAE (the photo's unwrapped texture and the tension of each expression); "
                                     "the brow raise, smile and squint recompute the tension, so D changes with them"))
    info = {"files": {k: Path(v).name for k, v in saved["files"].items()},
            "yaw_deg": round(float(np.degrees(pose[0, 1])), 1), "jaw_open_deg": round(float(np.degrees(pose[2, 0])), 1),
            "top_expressions": dict(sorted(((data.expression_names[k], round(float(v), 3)) for k, v in enumerate(p["expression"])),
                                           key=lambda kv: -kv[1])[:6])}
    models = "coarse and detail models" if res.detail is not None else "coarse model"
    page = write_page(out / "index.html", glb.read_bytes(), title="facetwin demo · astronaut",
                      subtitle=f"reconstructed on the CPU from one photo with the shipped {models}; "
                               "the 3D view plays a 4 s expression clip — pause it and move the sliders",
                      sections=sections, info=info)
    return {"out": str(out), "checkpoint": str(DEFAULT_CHECKPOINT), "overlay": saved["overlay"], "glb": saved["glb"],
            "obj": saved["obj"], "vertices": int(res.vertices.shape[0]),
            "yaw_deg": float(np.degrees(pose[0, 1])), "jaw_open_deg": float(np.degrees(pose[2, 0])),
            "scale_px_per_m": res.scale, "seconds": round(time.perf_counter() - start, 1), "page": str(page.resolve())}
