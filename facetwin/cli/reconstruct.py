"""``facetwin reconstruct IMAGE|FOLDER|VIDEO --out DIR [--json]``: coarse 3D reconstruction.

Per image it writes ``<name>.npz`` and ``<name>.json`` (parameters, camera, 2D/3D landmarks),
``<name>.obj`` (the posed mesh) and ``<name>_overlay.png``; ``--faces all`` does so for every face
(``<name>_face<k>``, largest first).

A video is read frame by frame (every frame unless ``--fps`` samples fewer), its main face
tracked from frame to frame, and written as ONE sequence (``<name>_sequence.npz`` with per-frame
parameters and timestamps + ``<name>_sequence.json``, a summary) and an overlay video
(``<name>_overlay.mp4``); per-frame meshes only with ``--per-frame``. ``--detail MODEL|default`` on a
video adds every frame's displacement map D to the sequence, computed beside the next frame's
coarse pass (a second network thread).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from facetwin.cli.main import add_head_model_flag, add_json_flag
from facetwin.errors import FacetwinError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("reconstruct", help="coarse 3D face reconstruction of images, a folder or a video",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="an image, a folder of images or a video")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", "--checkpoint", dest="model", default="default",
                   help="model file: 'default' (shipped), a coarse-encoder .safetensors or a training run folder")
    add_head_model_flag(p)
    p.set_defaults(head_model=None)
    p.add_argument("--person", default=None, metavar="NAME.facetwin", help="a person file (`facetwin personalize`): its model and its β")
    add_detail_flag(p)
    add_refine_flag(p)
    p.add_argument("--faces", choices=["main", "all"], default="main",
                   help="images: the largest face (default; a note says when others were skipped) or every face")
    v = p.add_argument_group("video")
    v.add_argument("--fps", default=None, metavar="F",
                   help="frames per second to reconstruct (default: every frame); e.g. 5 keeps one frame in 5 of a 25 fps clip")
    v.add_argument("--max-frames", default=None, metavar="N", help="stop after N reconstructed frames (default: the whole video)")
    v.add_argument("--smooth", action="store_true",
                   help="smooth pose, expression and camera in time (One-Euro filter, causal; raw values kept in the sequence file)")
    v.add_argument("--per-frame", action="store_true", help="also write every frame's mesh, parameters and overlay PNG")
    v.add_argument("--no-overlay", dest="overlay", action="store_false", help="skip the overlay MP4")
    v.add_argument("--threads", default="1", metavar="N",
                   help="torch threads for the network (default 1: decoding and tracking run in a second thread)")
    add_json_flag(p)
    p.set_defaults(func=run)


def add_refine_flag(p) -> None:
    """``--no-refine``: the encoder's prediction as it comes (reconstruct / export / animate)."""
    p.add_argument("--no-refine", dest="refine", action="store_false",
                   help="keep the encoder's prediction; by default pose, expression and camera are refined onto the "
                        "68 points the face was cropped around (the automatic annotator's or the video track's)")


def add_detail_flag(p) -> None:
    """``--detail MODEL``: the detail model (docs/detail.md) of reconstruct / export / animate."""
    p.add_argument("--detail", default=None, metavar="MODEL",
                   help="detail model file (`facetwin train detail`): 'default' = the shipped one (what images get "
                        "when the option is left out), 'none' = coarse only; adds D, the detail normal map and a "
                        "displaced mesh to image results; a video gets each frame's D in its sequence only when asked")


def detail_option(value):
    """The FaceTwin ``detail`` argument of a ``--detail`` value (None for 'none', and for 'default'
    or no value when no detail model is shipped)."""
    if value in ("", "none", "off"):
        return None
    if value in (None, "default"):
        from facetwin.models.detail import DEFAULT_MODEL_FILE

        return value if DEFAULT_MODEL_FILE.is_file() else None
    return value


def _positive(value, option: str, kind=float):
    """Parse a strictly positive, finite option value; FacetwinError (one line) otherwise."""
    if value is None:
        return None
    try:
        x = kind(value)
    except (TypeError, ValueError):
        raise FacetwinError(f"{option} must be a positive {'integer' if kind is int else 'number'}, got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise FacetwinError(f"{option} must be a positive {'integer' if kind is int else 'number'}, got {value!r}")
    return x


def _image_inputs(path: Path) -> list[tuple[str, Path]]:
    from facetwin.data.io import is_image_path, load_image
    from facetwin.outputs import unique_stems

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if is_image_path(p))
        if not files:
            raise FacetwinError(f"no images in {path}")
        names = unique_stems(files)
        return [(names[f], f) for f in files]
    if path.is_file():
        load_image(path)  # clear error for unreadable files before loading the model
        return [(path.stem, path)]
    raise FacetwinError(f"input not found: {path}")


def save_result(res, out: Path, name: str) -> dict:
    # Body owned by the export work (#17): every per-face file goes through facetwin.export
    # (docs/outputs.md): .npz, .json (named expression weights), overlay, GLB, OBJ + MTL + textures.
    from facetwin.export import write_result_files

    saved = write_result_files(res, out, name, head_model=getattr(res, "head_model", None) or "open")
    return {"name": name, "overlay": saved["overlay"], "obj": saved["obj"], "glb": saved["glb"]}


def note(message: str) -> None:
    print(f"facetwin: note: {message}", file=sys.stderr)


def run(args) -> dict:
    from facetwin.data.io import is_video_path

    src = Path(args.input)
    fps = _positive(args.fps, "--fps")
    max_frames = _positive(args.max_frames, "--max-frames", int)
    threads = _positive(args.threads, "--threads", int)
    if src.is_file() and is_video_path(src):
        if args.faces == "all":
            raise FacetwinError("--faces all is for images; a video follows its main face")
        return run_video(args, src, fps, max_frames, threads)
    if fps is not None or max_frames is not None:
        raise FacetwinError(f"--fps and --max-frames apply to a video; {src} is not one")
    return run_images(args, src)


def run_images(args, src: Path) -> dict:
    from tqdm import tqdm

    from facetwin.inference.reconstructor import FaceTwin
    from facetwin.outputs import ensure_dir

    items = _image_inputs(src)
    out = ensure_dir(args.out)
    ft = FaceTwin(args.model, head_model=args.head_model, person=args.person, detail=detail_option(args.detail), refine=args.refine)
    done, failed, several = [], [], []
    for name, item in tqdm(items, desc="reconstruct", file=sys.stderr, disable=len(items) < 2):
        try:
            res = ft.reconstruct(item)
        except FacetwinError as exc:
            if len(items) == 1:
                raise
            failed.append({"name": name, "reason": str(exc)})
            continue
        n = int(res.detection.get("faces_found", 1))
        if args.faces == "all":
            results = [res] + [ft.reconstruct(item, face=k) for k in range(1, n)]
            for k, r in enumerate(results):
                done.append(dict(save_result(r, out, f"{name}_face{k}"), face=k, faces_found=n))
        else:
            if n > 1:
                several.append((Path(item).name, n))
            done.append(dict(save_result(res, out, name), face=0, faces_found=n))
    if not done:
        raise FacetwinError(f"no face reconstructed in {src} ({failed[0]['reason'] if failed else 'no input'})")
    if several:
        if len(items) == 1:
            note(f"{several[0][0]}: {several[0][1]} faces found; reconstructed the largest (face 0); --faces all reconstructs every face")
        else:
            listed = ", ".join(f"{n}: {k}" for n, k in several[:3]) + (", ..." if len(several) > 3 else "")
            note(f"{len(several)} images show several faces ({listed}); the largest was used; --faces all reconstructs every face")
    result = {"input": str(src), "out": str(out), "reconstructed": len(done), "failed": len(failed),
              "faces": args.faces, "images_with_several_faces": len(several),
              "failures": failed[:20], "outputs": done[:20]}
    if ft.detail is not None:
        result["detail"] = {"model": ft.detail_meta.get("format"), "coarse_matches": ft.detail_meta.get("coarse_matches")}
        if not ft.detail_meta.get("coarse_matches"):
            note("the detail model was trained on another coarse model file (its SHA-256 differs): details may be off")
    if ft.person is not None:  # one identity for the person: its β (trained with its adapters) and the per-frame spread
        result["person"] = {k: v for k, v in ft.person.summary().items() if k != "beta_std"}
    return result


def run_video(args, src: Path, fps: float | None, max_frames: int | None, threads: int) -> dict:
    import torch
    from tqdm import tqdm

    from facetwin.data.tracking import FaceTracker
    from facetwin.data.video import VideoReader, VideoWriter, sample_step
    from facetwin.inference.reconstructor import FaceTwin
    from facetwin.inference.sequence import SequenceRecorder, StreamedArray, identity_spread_mm
    from facetwin.inference.smoothing import ParameterSmoother
    from facetwin.inference.video import ClipIdentity, StageClock, fast_overlay, label_frame, reconstruct_video
    from facetwin.outputs import clean_temporaries, ensure_dir

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    # a video's details only when asked: each frame's D (128² float16) costs 32 kB of sequence file and ~20 ms of CPU
    detail = detail_option(args.detail) if args.detail is not None else None
    if args.detail not in (None, "none", "off", "") and detail is None:
        raise FacetwinError("--detail default: no detail model is shipped with this installation; pass --detail MODEL_FILE")
    probe = VideoReader(src)  # clear error for an unreadable video before loading the model
    info = probe.info
    step = sample_step(info.fps, None, fps)
    reader = VideoReader(src, step=step, max_frames=max_frames)
    out = ensure_dir(args.out)
    clean_temporaries(out)  # leftovers of a killed earlier run
    name = src.stem
    ft = FaceTwin(args.model, head_model=args.head_model, person=args.person, detail=detail, refine=args.refine)
    faces = ft.model.head_model.faces.cpu().numpy()
    tracker, identity, clock = FaceTracker(), ClipIdentity(), StageClock()
    smoother = ParameterSmoother() if args.smooth else None
    detail_rows = StreamedArray(out, (ft.detail.map_size,) * 2, np.float16) if ft.detail is not None else None
    recorder = SequenceRecorder(smoothing=smoother is not None, detail_rows=detail_rows)
    out_fps = info.fps / step if info.fps > 0 else 25.0
    writer = VideoWriter(out / f"{name}_overlay.mp4", out_fps) if args.overlay else None
    frames_dir = out / f"{name}_frames"
    per_frame = []
    first_faces = None
    expected = info.n_frames // step + (1 if info.n_frames % step else 0) if info.n_frames else None
    total = min(x for x in (expected, max_frames) if x) if (expected or max_frames) else None
    t_loop = time.perf_counter()
    interrupted = False
    try:
        for r in tqdm(reconstruct_video(ft, src, reader=reader, tracker=tracker, identity=identity, smoother=smoother, clock=clock,
                                        details=ft.detail is not None),
                      total=total, desc="reconstruct", unit="frame", file=sys.stderr, disable=None):
            recorder.add(r)
            if first_faces is None and r.track.detected and r.track.n_faces:
                first_faces = r.track.n_faces
            if writer is not None:
                clock.start("overlay")
                if r.ok:
                    pic = fast_overlay(r.frame.rgb, r.vertices, faces, r.scale, r.translation,
                                       r.reconstruction.crop_transform, ft.crop_size)
                else:
                    pic = label_frame(r.frame.rgb, f"no face ({r.track.reason or 'lost'})")
                clock.stop("overlay")
                clock.start("write")
                writer.write(pic)
                clock.stop("write")
            if args.per_frame and r.ok:
                per_frame.append(save_result(r.as_reconstruction(), frames_dir, f"{name}_f{r.frame.index:06d}"))
    except KeyboardInterrupt:
        interrupted = True  # keep what was reconstructed: finish both files, then stop
    except BaseException:
        if writer is not None:
            writer.abort()
        recorder.discard()
        raise
    t_end_loop = time.perf_counter()
    if not recorder.n_valid:
        if writer is not None:
            writer.abort()
        recorder.discard()
        if interrupted:
            raise KeyboardInterrupt
        rep = reader.report.message()
        raise FacetwinError(f"no face reconstructed in {src.name} ({recorder.n} frames read)" + (f"; {rep}" if rep else ""))
    report = reader.report
    seq = recorder.arrays(identity, faces)
    spread_mm = identity_spread_mm(ft.model.head_model, seq["shape_frames"][seq["valid"]], seq["shape"])
    elapsed = t_end_loop - t_loop
    speed = recorder.n / elapsed if elapsed > 0 else float("nan")
    summary = {
        "input": str(src), "video": {"fps": info.fps, "frames_declared": info.n_frames, "width": info.width, "height": info.height},
        "sampling": {"step": step, "fps": out_fps, "what": "every frame" if step == 1 else f"one frame in {step}",
                     "max_frames": max_frames},
        "frames": recorder.n, "frames_with_face": recorder.n_valid, "detections": tracker.detections,
        "faces_in_first_detection": first_faces,
        "smoothing": smoother.describe() if smoother else None,
        "identity": {"shape_std_mean": float(np.mean(seq["shape_std"])), "spread_mm": spread_mm,
                     "how": "mean of per-frame beta over frames with a face; spread = RMS distance of each frame's neutral mesh from the clip's"},
        "read": report.as_dict(), "interrupted": interrupted,
        "timing": {"total_s": time.perf_counter() - t0, "frames_s": elapsed, "fps": speed, "torch_threads": threads,
                   "cpu_ms_per_frame": clock.per_frame_ms(recorder.n),
                   "threads": "decode + track in one thread, network + overlay + write in the other" if ft.detail is None else
                              "decode + track, the coarse network, details + overlay + write: three threads side by side"},
    }
    try:  # the sequence first: a failed write (disk full) then leaves the earlier overlay MP4 untouched too
        files = recorder.save(out, name, identity, faces, summary)
    except BaseException:
        if writer is not None:
            writer.abort()
        recorder.discard()
        raise
    overlay_path = writer.close() if writer is not None else None
    if interrupted:
        note(f"interrupted after {recorder.n} frames; the sequence and overlay so far are written")
        raise KeyboardInterrupt
    if report.message():
        print(f"facetwin: warning: {report.message()}", file=sys.stderr)
    if first_faces and first_faces > 1:
        note(f"{first_faces} faces in the first frame; followed the largest")
    result = {"input": str(src), "out": str(out), "frames": recorder.n, "frames_with_face": recorder.n_valid,
              "sampled": summary["sampling"]["what"], "detections": tracker.detections,
              "identity_spread_mm": round(spread_mm, 3), "smoothing": "one-euro" if smoother else "off",
              "sequence": str(files["sequence"]), "summary": str(files["summary"]),
              "overlay_video": str(overlay_path) if overlay_path else None,
              "complete": report.complete}
    if args.per_frame:
        result["per_frame"] = str(frames_dir)
    result["fps"] = round(speed, 2)
    if ft.detail is not None:
        result["detail"] = {"model": ft.detail_meta.get("format"), "coarse_matches": ft.detail_meta.get("coarse_matches"),
                            "in_sequence": "detail_displacement"}
    return result
