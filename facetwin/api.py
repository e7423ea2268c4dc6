"""facetwin's Python API: the jobs of the command line as functions.

    import facetwin.api as ft

    model = ft.load()                                   # shipped coarse model + open head model, CPU
    face = ft.reconstruct(ft.demo_photo(), model)       # a path or an (H, W, 3) uint8 RGB array
    ft.expression_weights(face)["mouthSmileLeft"]       # the 52 ARKit weights by name
    files = ft.export(face, "out", "astronaut")         # GLB + OBJ/MTL/PNG + .npz/.json + overlay
    page = ft.view(files["glb"], "out/astronaut.html")  # offline WebGL page
    ft.personalize(["clip.mp4", "photos/"], "me.facetwin", minutes=3)   # a person file
    me = ft.load(person="me.facetwin")                  # the base model with her adapters and β
    ft.animate("photo.jpg", "talk.mp4", "anim")         # mesh sequence, side-by-side MP4, animated GLB
    model = ft.load(detail="runs/detail_mae")           # with a detail model: face.detail (D, normals, displaced mesh)
    ft.details_for_expression(face, model, {"browInnerUp": 1.0})   # the same face's wrinkles under another expression

``face`` is a :class:`facetwin.inference.reconstructor.Reconstruction`: ``face.vertices`` (V, 3)
metres, ``face.landmarks2d`` (68, 2) image pixels, ``face.params`` (shape, expression, pose,
albedo, light), ``face.camera()`` and ``face.overlay()``. Units, axes and every file:
docs/outputs.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetwin.errors import FacetwinError

DEMO_PHOTO = Path(__file__).resolve().parent / "assets" / "astronaut.png"

__all__ = ["DEMO_PHOTO", "animate", "demo_photo", "details_for_expression", "expression_weights", "export", "load", "personalize",
           "reconstruct", "view"]


def load(model_file: str | Path = "default", head_model: str | None = None, device: str = "cpu",
         person: str | Path | None = None, detail: str | Path | None = "default", refine=True):
    """The reconstruction model: ``"default"`` (shipped), a coarse-encoder model file
    (``.safetensors``) or a training run folder; ``head_model`` "open" or
    "flame:/path/generic_model.pkl[,...]"; ``person`` a person file of :func:`personalize`;
    ``detail`` a detail model file or run folder (``"default"``: the shipped one if there is one;
    None: coarse only); ``refine`` False keeps the encoder's prediction (default: refined onto the
    68 points the face is cropped around, :mod:`facetwin.models.refine`)."""
    from facetwin.inference.reconstructor import FaceTwin

    return FaceTwin(model_file, head_model=head_model, device=device, person=person, detail=detail, refine=refine)


def details_for_expression(face, model, expression, pose=None):
    """The details of ``face`` (a result of a model with details) under another expression:
    ``expression`` a (52,) ψ vector or ``{ARKit name: weight}``, ``pose`` (5, 3) (default the
    face's own). The tension and the displacement are recomputed, so wrinkles follow; returns a
    :class:`facetwin.inference.reconstructor.DetailResult` (``displaced_vertices`` is the new mesh)."""
    import torch

    from facetwin.inference.reconstructor import detail_result

    if getattr(model, "detail", None) is None or getattr(face, "detail", None) is None:
        raise FacetwinError("details_for_expression needs a model loaded with a detail model and a face it reconstructed")
    names = list(model.model.head_model.data.expression_names)
    if isinstance(expression, dict):
        unknown = [k for k in expression if k not in names]
        if unknown:
            raise FacetwinError(f"unknown expression name {unknown[0]!r} (e.g. {', '.join(names[:4])}, ...)")
        psi = np.zeros(len(names), np.float32)
        for k, v in expression.items():
            psi[names.index(k)] = float(v)
    else:
        psi = np.asarray(expression, np.float32).reshape(-1)
    pose = np.asarray(face.params["pose"] if pose is None else pose, np.float32).reshape(1, 5, 3)
    d = face.detail
    tex = torch.from_numpy(np.ascontiguousarray(d.texture)).permute(2, 0, 1)[None].float() / 255
    vis = torch.from_numpy((np.asarray(d.visibility) > 127).astype(np.float32))[None, None]
    with torch.no_grad():
        maps = model.detail.animate(tex, vis, torch.as_tensor(np.asarray(face.params["shape"], np.float32))[None],
                                    torch.from_numpy(psi)[None], torch.from_numpy(pose))
    return detail_result(maps, 0, d.model)


def demo_photo() -> np.ndarray:
    """The public-domain photo shipped for the demo (Eileen Collins, NASA), (512, 512, 3) uint8."""
    from facetwin.data.io import load_image

    return load_image(DEMO_PHOTO)[0]


def reconstruct(image, model=None, landmarks: np.ndarray | None = None):
    """Reconstruct the main face of ``image`` (path or (H, W, 3) uint8 RGB) with ``model``
    (:func:`load`'s; loaded when None). Raises FacetwinError when no usable face is found."""
    model = model or load()
    return model.reconstruct(image, landmarks=landmarks)


def expression_weights(face) -> dict[str, float]:
    """The reconstructed expression as ``{ARKit name: weight}`` (nominal range [0, 1])."""
    from facetwin.export.result import _head_data, named_expression

    return named_expression(_head_data("open").expression_names, face.params["expression"])


def export(face, out: str | Path, name: str = "face", formats=("glb", "obj"), animation=None,
           texture_size: int = 512) -> dict[str, str]:
    """Write every file of one face into ``out`` (``<name>.glb``, ``.obj`` + ``.mtl`` +
    ``_texture.png``, ``_albedo.png``, ``_photo.png``, ``.npz``, ``.json``, ``_overlay.png``);
    returns ``{kind: path}``. ``animation``: ``(times (T,), weights (T, 52)[, rotations (T, 5, 3)])``
    stored in the GLB."""
    from facetwin.export import write_result_files

    return write_result_files(face, out, name, tuple(formats), texture_size=texture_size, animation=animation)["files"]


def view(source: str | Path, out: str | Path | None = None) -> Path:
    """An offline HTML page (three.js inlined) showing a ``.glb`` or result ``.npz`` with a
    slider per expression; returns its path (default: ``source`` with ``.html``)."""
    from facetwin.export.result import read_glb_or_result
    from facetwin.viewer import write_page

    source = Path(source)
    if not source.is_file():
        raise FacetwinError(f"not found: {source}")
    return write_page(Path(out) if out else source.with_suffix(".html"), read_glb_or_result(source), title=f"facetwin · {source.stem}")


def _run_command(argv: list[str]) -> dict:
    """Run one ``facetwin`` subcommand in this process through its own parser (the command's
    defaults and checks, one implementation) and return its result dict."""
    from facetwin.cli.main import build_parser

    args = build_parser().parse_args([str(a) for a in argv])
    return args.func(args) or {}


def personalize(inputs, out: str | Path, minutes: float = 3.0, model_file: str | Path = "default", **options) -> dict:
    """Train a person file ``out`` (``NAME.facetwin``) from photos and/or videos of one person
    (paths of files or folders), within ``minutes``; as ``facetwin personalize``. Extra
    ``options`` are the command's long options (``adapter_width=32`` → ``--adapter-width 32``)."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    argv = ["personalize", *inputs, "--out", out, "--minutes", minutes]
    if model_file != "default":
        argv += ["--checkpoint", model_file]  # the base model the person file is made for
    return _run_command(argv + _options(options))


def animate(source: str | Path, driver: str | Path, out: str | Path, model_file: str | Path = "default",
            **options) -> dict:
    """Drive ``source`` (a photo or a reconstruct result ``.npz``) with the expression, jaw and
    eyes of ``driver`` (a photo or a video), as ``facetwin animate``: writes the mesh sequence,
    the side-by-side MP4 and the animated GLB into ``out``; returns their paths."""
    argv = ["animate", "--source", source, "--driver", driver, "--out", out, "--model", model_file]
    return _run_command(argv + _options(options))


def _options(options: dict) -> list[str]:
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (False, None):
            argv += [flag, str(value)]
    return argv
