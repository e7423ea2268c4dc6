"""facetwin's Python API: the jobs of the command line as functions.

    import facetwin.api as ft

    model = ft.load()                                   # shipped coarse model + open head model, CPU
    face = ft.reconstruct(ft.demo_photo(), model)       # a path or an (H, W, 3) uint8 RGB array
    ft.expression_weights(face)["mouthSmileLeft"]       # the 52 ARKit weights by name
    files = ft.export(face, "out", "astronaut")         # GLB + OBJ/MTL/PNG + .npz/.json + overlay
    page = ft.view(files["glb"], "out/astronaut.html")  # offline WebGL page

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

__all__ = ["DEMO_PHOTO", "demo_photo", "expression_weights", "export", "load", "reconstruct", "view"]


def load(checkpoint: str | Path = "default", head_model: str | None = None, device: str = "cpu"):
    """The reconstruction model: ``"default"`` (shipped), an exported ``.safetensors`` or a
    training run folder; ``head_model`` "open" or "flame:/path/generic_model.pkl[,...]"."""
    from facetwin.inference.reconstructor import FaceTwin

    return FaceTwin(checkpoint, head_model=head_model, device=device)


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
