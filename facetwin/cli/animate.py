"""``facetwin animate --source A --driver B --out DIR``: drive a reconstructed face with another
face's expression, jaw and eye pose.

``A`` is a photo (reconstructed on the spot) or a reconstruct result (a ``<name>.npz`` of one
image or a ``<name>_sequence.npz`` of a clip: its identity β). ``B`` is a photo or a video,
reconstructed frame by frame (tracked, streaming). The source keeps its identity, head and neck
pose and camera; per driver frame it takes the driver's expression ψ and the jaw and eye
rotations. Writes ``<A>_by_<B>_animation.npz`` (the mesh sequence, (T, V, 3) metres, with the
parameters and timestamps), ``<A>_by_<B>_side_by_side.mp4`` (driver | animated source) and
``<A>_by_<B>_animation.json``; ``<A>_by_<B>.glb`` (morph-target animation) when the export
package is installed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetwin.cli.main import add_head_model_flag, add_json_flag
from facetwin.errors import FacetwinError

DRIVEN_JOINTS = (2, 3, 4)  # jaw, eye_left, eye_right (pose rows); global and neck stay the source's


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("animate", help="drive a reconstructed face with the expressions of a photo or video",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="a photo, or a reconstruct result (.npz)")
    p.add_argument("--driver", required=True, help="a photo or a video whose expressions drive the source")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", "--checkpoint", dest="model", default="default",
                   help="model file: 'default' (shipped), a coarse-encoder .safetensors or a training run folder")
    add_head_model_flag(p)
    p.set_defaults(head_model=None)
    p.add_argument("--person", default=None, metavar="NAME.facetwin",
                   help="a photo source is reconstructed with this person file (its adapters and its β); the driver with the base model")
    from facetwin.cli.reconstruct import add_detail_flag, add_refine_flag

    add_detail_flag(p)
    add_refine_flag(p)
    p.add_argument("--max-frames", default=None, metavar="N", help="stop after N driver frames")
    p.add_argument("--smooth", action="store_true", help="smooth the driver's expression and pose (One-Euro filter)")
    p.add_argument("--no-glb", dest="glb", action="store_false", help="skip the animated GLB")
    p.add_argument("--threads", default="1", metavar="N", help="torch threads (default 1; decoding runs in a second thread)")
    add_json_flag(p)
    p.set_defaults(func=run)


@dataclass
class Source:
    name: str
    shape: np.ndarray            # (n_shape,)
    pose: np.ndarray             # (5, 3) the source's own pose
    expression: np.ndarray       # (n_expr,) its own expression (the GLB's rest weights)
    image: np.ndarray            # (H, W, 3) uint8 backdrop of the right panel
    scale: float                 # camera onto ``image``
    translation: np.ndarray      # (2,)
    crop_transform: np.ndarray   # (2, 3) image → crop pixels (where to render)
    detail_texture: np.ndarray | None = None     # (S, S, 3) uint8 the source unwrapped into the detail layout
    detail_visibility: np.ndarray | None = None  # (S, S) uint8


def load_source(path: Path, ft) -> Source:
    """A photo (reconstructed now) or a result file (.npz of reconstruct)."""
    from facetwin.data.io import is_image_path

    if not path.is_file():
        raise FacetwinError(f"source not found: {path}")
    if path.suffix.lower() == ".npz":
        return _source_from_npz(path, ft)
    if not is_image_path(path):
        raise FacetwinError(f"source must be a photo or a reconstruct result (.npz): {path.name}")
    return source_of(ft.reconstruct(path), path.stem)


def _source_from_npz(path: Path, ft) -> Source:
    from facetwin.data.alignment import crop_transform

    detail = (None, None)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if "shape" in keys and "valid" in keys:  # a reconstruct sequence: the clip identity
                valid = z["valid"]
                first = int(np.argmax(valid)) if valid.any() else 0
                shape, pose, expr = z["shape"], z["pose"][first], z["expression"][first]
            elif "param_shape" in keys:  # one image's result
                shape, pose = z["param_shape"], z["param_pose"]
                expr = z["param_expression"] if "param_expression" in keys else np.zeros(1)
                if "detail_texture" in keys and "detail_visibility" in keys:  # reconstructed with details
                    detail = (np.asarray(z["detail_texture"], np.uint8), np.asarray(z["detail_visibility"], np.uint8))
            else:
                raise FacetwinError(f"{path.name} is not a facetwin reconstruct result (no identity β in it)")
    except FacetwinError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise FacetwinError(f"unreadable result file {path.name}: {exc}") from None
    shape, pose, expr = (np.asarray(a, np.float32) for a in (shape, pose, expr))
    if not all(np.isfinite(a).all() for a in (shape, pose, expr)) or pose.shape != (5, 3):
        raise FacetwinError(f"{path.name}: identity or pose values are not finite (5, 3)-shaped numbers")
    # No photo: a neutral backdrop, the head upright and centred.
    from facetwin.inference.video import pose_mesh

    pose = pose.copy()
    pose[:2] = 0.0
    verts, _ = pose_mesh(ft.model.head_model, shape, expr, pose)
    S = 512
    lo, hi = verts[:, :2].min(0), verts[:, :2].max(0)
    scale = 0.8 * S / float(max(hi - lo))
    centre = (lo + hi) / 2 * np.array([1.0, -1.0]) * scale
    translation = np.array([S / 2, S / 2]) - centre
    image = np.full((S, S, 3), 235, np.uint8)
    A = crop_transform(np.array([S / 2, S / 2]), S / 1.2, ft.crop_size)
    return Source(path.stem.removesuffix("_sequence"), shape, pose, expr, image, scale, translation, A, *detail)


def _driver_frames(path: Path, ft, max_frames, smoother):
    """(frame rgb, time, params or None, fps) per driver frame: a photo gives one."""
    from facetwin.data.io import is_image_path, is_video_path

    if not path.is_file():
        raise FacetwinError(f"driver not found: {path}")
    if is_video_path(path):
        from facetwin.data.video import VideoReader
        from facetwin.inference.video import reconstruct_video

        reader = VideoReader(path, max_frames=max_frames)
        fps = reader.info.fps or 25.0
        for r in reconstruct_video(ft, path, reader=reader, smoother=smoother):
            yield r.frame.rgb, r.frame.time, (r.params if r.ok else None), fps, reader
        return
    if not is_image_path(path):
        raise FacetwinError(f"driver must be a photo or a video: {path.name}")
    res = ft.reconstruct(path)
    yield res.image, 0.0, res.params, 1.0, None


def face_view(shape, crop_transform, crop_size: int, margin: float = 1.35) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a square around the face (``margin`` × its crop), inside the image."""
    from facetwin.data.alignment import apply_affine, invert_affine

    H, W = shape[:2]
    inv = invert_affine(crop_transform)
    c = apply_affine(inv, np.array([[crop_size / 2, crop_size / 2]]))[0]
    side = min(H, W, margin * crop_size * float(np.sqrt(abs(np.linalg.det(inv[:, :2])))))
    x0 = int(np.clip(round(c[0] - side / 2), 0, W - side))
    y0 = int(np.clip(round(c[1] - side / 2), 0, H - side))
    return y0, y0 + int(side), x0, x0 + int(side)


def side_by_side(left: np.ndarray, right: np.ndarray, height: int) -> np.ndarray:
    """Both pictures scaled to ``height`` (even widths, as MP4 encoders like) and put side by side."""
    import cv2

    def fit(im):
        w = max(2, int(round(im.shape[1] * height / im.shape[0] / 2)) * 2)
        return cv2.resize(im, (w, height), interpolation=cv2.INTER_AREA if im.shape[0] > height else cv2.INTER_LINEAR)

    return np.concatenate([fit(left), fit(right)], 1)


def run(args) -> dict:
    import torch
    from tqdm import tqdm

    from facetwin.cli.reconstruct import _positive, detail_option, note
    from facetwin.data.video import VideoWriter
    from facetwin.inference.reconstructor import FaceTwin
    from facetwin.inference.sequence import StreamedArray, write_npz
    from facetwin.inference.smoothing import ParameterSmoother
    from facetwin.inference.video import fast_overlay, label_frame, pose_mesh
    from facetwin.outputs import clean_temporaries, ensure_dir, write_json

    max_frames = _positive(args.max_frames, "--max-frames", int)
    torch.set_num_threads(_positive(args.threads, "--threads", int))
    src_path, drv_path = Path(args.source), Path(args.driver)
    for p, what in ((src_path, "source"), (drv_path, "driver")):
        if not p.is_file():
            raise FacetwinError(f"{what} not found: {p}")
    out = ensure_dir(args.out)
    clean_temporaries(out)  # leftovers of a killed earlier run
    ft = FaceTwin(args.model, head_model=args.head_model, refine=args.refine)  # the driver: coarse only
    hm = ft.model.head_model
    detail = detail_option(args.detail)
    faces = hm.faces.cpu().numpy()
    if args.person and src_path.suffix.lower() == ".npz":
        raise FacetwinError("--person applies to a photo source (a result .npz already holds its identity)")
    # the source's person model (made for --model); the driver keeps the base model
    src_ft = FaceTwin(args.model, head_model=args.head_model, person=args.person, detail=detail, refine=args.refine) if args.person or detail else ft
    source = load_source(src_path, src_ft)
    details = DetailAnimator(src_ft.detail, source) if src_ft.detail is not None and source.detail_texture is not None else None
    if src_ft.detail is not None and details is None:
        note(f"{src_path.name} holds no detail texture (reconstruct it with --detail): animating the coarse mesh only")
    name = f"{source.name}_by_{drv_path.stem}"
    smoother = ParameterSmoother() if args.smooth else None
    view = face_view(source.image.shape, source.crop_transform, ft.crop_size)
    verts_rows = StreamedArray(out, (int(hm.v_template.shape[0]), 3))
    d_rows = StreamedArray(out, details.map_shape, np.float16) if details else None
    writer = None
    times, expr_rows, pose_rows, valid = [], [], [], []
    last = None
    reader = None
    t0 = time.perf_counter()
    try:
        frames = _driver_frames(drv_path, ft, max_frames, smoother)
        for rgb, t, params, fps, reader in tqdm(frames, desc="animate", unit="frame", file=sys.stderr, disable=None):
            if params is not None:
                last = params
            expr = np.asarray(last["expression"] if last is not None else np.zeros_like(source.expression), np.float32)
            pose = source.pose.astype(np.float32).copy()
            if last is not None:
                pose[list(DRIVEN_JOINTS)] = np.asarray(last["pose"], np.float32)[list(DRIVEN_JOINTS)]
            verts, _ = pose_mesh(hm, source.shape, expr, pose)
            if details is not None:  # new expression → new tension → new D: the wrinkles follow
                maps = details.frame(expr, pose)
                d_rows.append(maps.displacement[0, 0].numpy())
                verts = maps.displaced_vertices[0].numpy()
            verts_rows.append(verts)
            times.append(t)
            expr_rows.append(expr)
            pose_rows.append(pose)
            valid.append(params is not None)
            if details is None:
                right = fast_overlay(source.image, verts, faces, source.scale, source.translation, source.crop_transform,
                                     ft.crop_size, opacity=1.0 if source.image.std() < 1 else 0.85)
                y0, y1, x0, x1 = view
                right = right[y0:y1, x0:x1]
            else:  # shading with the frame's detail normals: the wrinkles show
                right = details.picture(maps, view)
            left = rgb if params is not None else label_frame(rgb, "no face: holding the last expression")
            pic = side_by_side(left, right, min(512, max(256, rgb.shape[0] // 2 * 2)))
            if writer is None:
                writer = VideoWriter(out / f"{name}_side_by_side.mp4", fps)
            writer.write(pic)
    except BaseException:
        verts_rows.discard()
        if d_rows is not None:
            d_rows.discard()
        if writer is not None:
            writer.abort()
        raise
    if not any(valid):
        verts_rows.discard()
        if d_rows is not None:
            d_rows.discard()
        writer.abort()
        raise FacetwinError(f"no face found in the driver {drv_path.name}")
    elapsed = time.perf_counter() - t0
    video = writer.path
    times_a = np.asarray(times, np.float64)
    arrays = {"time": times_a, "valid": np.asarray(valid), "shape": np.asarray(source.shape, np.float32),
              "expression": np.stack(expr_rows), "pose": np.stack(pose_rows), "faces": faces.astype(np.int32)}
    glb, glb_note = None, None
    try:  # the MP4 is moved into place last: a failed write (disk full) leaves the earlier one untouched
        streamed = {"vertices": verts_rows}
        if d_rows is not None:  # (T, S, S) float16 D per frame (metres), detail UV layout
            streamed["detail_displacement"] = d_rows
        npz = write_npz(out / f"{name}_animation.npz", arrays, streamed)
        if args.glb:
            glb, glb_note = write_animated_glb(out / f"{name}.glb", hm, source, times_a, arrays["expression"], arrays["pose"])
    except BaseException:
        writer.abort()
        raise
    if glb_note:
        note(glb_note)
    rep = reader.report.message() if reader is not None else None
    if rep:
        print(f"facetwin: warning: {rep}", file=sys.stderr)
    summary = {"source": str(src_path), "driver": str(drv_path), "frames": len(times), "frames_with_face": int(sum(valid)),
               "driven": ["expression", "jaw", "eye_left", "eye_right"], "kept_from_source": ["identity", "global", "neck", "camera"],
               "smoothing": smoother.describe() if smoother else None, "animation": npz.name, "video": video.name,
               "glb": glb.name if glb else None, "fps": len(times) / elapsed if elapsed > 0 else None,
               "details": None if details is None else {"model": src_ft.detail_meta.get("format"),
                                                       "what": "D recomputed per frame from the tension of the frame's expression",
                                                       "vertices": "the displaced mesh (coarse + D along the normal)"}}
    try:
        js = write_json(out / f"{name}_animation.json", summary)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return {"source": str(src_path), "driver": str(drv_path), "frames": len(times), "frames_with_face": int(sum(valid)),
            "animation": str(npz), "side_by_side": str(video), "summary": str(js), "glb": str(glb) if glb else None,
            "fps": round(len(times) / elapsed, 2) if elapsed > 0 else None}


class DetailAnimator:
    """The source's details under each driver frame's expression (:meth:`DetailModel.animate`)
    and the picture of them (grey shading with the detail normals, the face view of the source)."""

    def __init__(self, model, source: Source, size: int = 384):
        import torch

        self.model, self.source, self.size = model, source, size
        f = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float().div(255)  # noqa: E731
        self.texture = f(source.detail_texture).permute(2, 0, 1)[None]
        self.visibility = (f(source.detail_visibility) > 0.5).float()[None, None]
        self.shape = torch.as_tensor(np.asarray(source.shape, np.float32))[None]
        self.map_shape = tuple(self.visibility.shape[-2:])

    def frame(self, expression: np.ndarray, pose: np.ndarray):
        import torch

        with torch.no_grad():
            return self.model.animate(self.texture, self.visibility, self.shape, torch.as_tensor(expression, dtype=torch.float32)[None],
                                      torch.as_tensor(pose, dtype=torch.float32)[None])

    def picture(self, maps, view, backdrop: bool = True) -> np.ndarray:
        """(R, R, 3) uint8: the source image's face view (``backdrop=False``: mid grey, no pixel of
        the photo) with the detail-shaded mesh over it."""
        import cv2
        import torch

        y0, y1, x0, x1 = view
        R = self.size
        k = R / (y1 - y0)
        s = torch.tensor([self.source.scale * k])
        t = torch.as_tensor((np.asarray(self.source.translation) - [x0, y0]) * k, dtype=torch.float32)[None]
        img, mask = self.model.shaded(maps.vertices, maps.normals, s, t, R)
        back = (cv2.resize(self.source.image[y0:y1, x0:x1], (R, R), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
                if backdrop else np.full((R, R, 3), 0.5, np.float32))
        a = mask[0, 0].numpy()[..., None]
        pic = img[0].permute(1, 2, 0).numpy() * a + back * (1 - a)
        return (pic * 255 + 0.5).astype(np.uint8)


# the ARKit blendshapes set to 1 for the expression pictures (scripts/detail_expressions.py, the demo page)
DETAIL_EXPRESSIONS = {
    "brow raise": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "squint": ("eyeSquintLeft", "eyeSquintRight", "cheekSquintLeft", "cheekSquintRight"),
}


def detail_expression_tiles(ft, source: Source, size: int = 256, with_input: bool = True,
                            backdrop: bool = True) -> list[tuple[str, np.ndarray]]:
    """(label, (size, size, 3) uint8) tiles of one face: [input ·] coarse shading · detailed shading
    · the same face with each of :data:`DETAIL_EXPRESSIONS` — grey shading, so the geometry shows;
    T_UV and D recomputed for every expression (``ft`` has a detail model, ``source`` its unwrapped texture).
    ``backdrop=False``: grey around the mesh instead of the photo (for photos that must not be published)."""
    import dataclasses

    import cv2

    anim = DetailAnimator(ft.detail, source, size)
    view = face_view(source.image.shape, source.crop_transform, ft.crop_size)
    names = list(ft.model.head_model.data.expression_names)
    tiles = []
    if with_input:
        y0, y1, x0, x1 = view
        tiles.append(("input", cv2.resize(source.image[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)))
    own = anim.frame(source.expression, source.pose)
    tiles.append(("coarse shading", anim.picture(dataclasses.replace(own, normals=None), view, backdrop)))  # the coarse mesh's normals
    tiles.append(("detailed shading", anim.picture(own, view, backdrop)))
    for label, units in DETAIL_EXPRESSIONS.items():
        psi = np.asarray(source.expression, np.float32).copy()
        for u in units:
            psi[names.index(u)] = 1.0
        tiles.append((label, anim.picture(anim.frame(psi, source.pose), view, backdrop)))
    return tiles


def source_of(res, name: str) -> Source:
    """The :class:`Source` of a reconstruction (its details' texture when it has them)."""
    d = res.detail
    return Source(name, res.params["shape"], res.params["pose"], res.params["expression"], res.image,
                  res.scale, res.translation, res.crop_transform,
                  None if d is None else d.texture, None if d is None else d.visibility)


def write_animated_glb(path: Path, head_model, source: Source, times, expression, pose):
    """INTEGRATION POINT with facetwin.export (written in parallel): an animated GLB through its
    ``write_glb(asset, path, animation=Animation(times, weights, rotations))``. Returns
    ``(path or None, note or None)``; without the export package the GLB is skipped with a note."""
    try:
        from facetwin.export import Animation, build_face_asset, write_glb
    except ImportError:
        return None, "animated GLB skipped: facetwin.export is not part of this build (the .npz and MP4 are written)"
    data = head_model.data
    K = data.n_expr
    weights = np.zeros((len(times), K), np.float32)
    weights[:, : min(K, expression.shape[1])] = expression[:, :K]
    t = np.asarray(times, np.float64)
    if len(t) == 1:
        t = np.array([0.0])
    asset = build_face_asset(data, shape=source.shape, expression=source.expression, pose=source.pose)
    return write_glb(asset, path, animation=Animation(t - t[0], weights, np.asarray(pose, np.float32))), None
