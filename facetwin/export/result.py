"""From one reconstructed face (plain arrays) to the files a user takes away.

:class:`FaceResult` is what the exporter needs of a reconstruction: it is made from a
:class:`facetwin.inference.reconstructor.Reconstruction` (duck-typed: this layer does not import
inference) or read back from a result ``.npz``, so ``facetwin export result.npz`` rebuilds every
file without the photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetwin.errors import FacetwinError

FORMATS = ("glb", "obj")
TEXTURE_SIZE = 512


@dataclass
class FaceResult:
    """One face. Units: metres (model frame), pixels (image).

    Attributes:
        params: ``shape`` (n_shape,), ``expression`` (n_expr,), ``pose`` (5, 3), ``albedo`` (K,), ``light`` (9, 3).
        vertices: (V, 3) posed mesh (model frame) as the camera sees it.
        scale: pixels per metre; translation: (2,) pixels (``u = scale · (x, -y) + translation``).
        photo_texture: (S, S, 3) uint8 photo unwrapped into UV space, or None.
        photo_visibility: (S, S) uint8, 255 where the photo texture was seen.
        head_model: the head model spec ("open" or "flame:...").
    """

    params: dict[str, np.ndarray]
    vertices: np.ndarray
    scale: float
    translation: np.ndarray
    photo_texture: np.ndarray | None = None
    photo_visibility: np.ndarray | None = None
    head_model: str = "open"
    extras: dict = field(default_factory=dict)

    @classmethod
    def from_reconstruction(cls, res, head_model: str = "open", data=None, texture_size: int = TEXTURE_SIZE,
                            uv_mapper=None) -> "FaceResult":
        """From a Reconstruction (unwraps its photo into a ``texture_size``² UV map)."""
        from facetwin.export.textures import photo_texture

        data = data or _head_data(head_model)
        tex, vis = (None, None)
        if data.uv_coords is not None and getattr(res, "image", None) is not None:
            tex, vis = photo_texture(data, res.vertices, res.scale, res.translation, res.image, texture_size, uv_mapper)
        return cls(params={k: np.asarray(v) for k, v in res.params.items()}, vertices=np.asarray(res.vertices, np.float32),
                   scale=float(res.scale), translation=np.asarray(res.translation, np.float64), photo_texture=tex,
                   photo_visibility=vis, head_model=head_model)

    @classmethod
    def from_npz(cls, path: str | Path) -> "FaceResult":
        """Read a result ``.npz`` written by ``facetwin reconstruct`` (see docs/outputs.md)."""
        from facetwin.npzio import read_npz

        raw = read_npz(path, "reconstruct result")
        missing = [k for k in ("vertices", "scale", "translation", "param_shape", "param_expression", "param_pose") if k not in raw]
        if missing:
            raise FacetwinError(f"{path} is not a facetwin reconstruct result (missing {', '.join(missing)})")
        params = {k[6:]: raw[k] for k in raw if k.startswith("param_")}
        return cls(params=params, vertices=raw["vertices"].astype(np.float32), scale=float(raw["scale"]),
                   translation=raw["translation"].astype(np.float64), photo_texture=raw.get("photo_texture"),
                   photo_visibility=raw.get("photo_visibility"),
                   head_model=str(raw["head_model"]) if "head_model" in raw else "open")

    def npz_arrays(self) -> dict[str, np.ndarray]:
        """The arrays :meth:`from_npz` reads back."""
        out = {"vertices": self.vertices, "scale": np.float64(self.scale), "translation": self.translation,
               "head_model": np.array(self.head_model)}
        out.update({f"param_{k}": v for k, v in self.params.items()})
        if self.photo_texture is not None:
            out["photo_texture"] = self.photo_texture
            out["photo_visibility"] = self.photo_visibility
        return out


_HEAD_DATA: dict = {}


def _source_head_data(spec: str):
    from facetwin.headmodel import load_head_model_data

    if spec not in _HEAD_DATA:
        _HEAD_DATA.clear()  # one head model at a time (the arrays are a few MB)
        _HEAD_DATA[spec] = load_head_model_data(spec)
    return _HEAD_DATA[spec]


def _head_data(spec: str):
    """The head model as exported: its own UV layout with the eyeballs in their own discs."""
    from facetwin.export.asset import export_layout

    return export_layout(_source_head_data(spec))


def named_expression(names, expression) -> dict[str, float]:
    """``{ARKit name: weight}`` of an expression vector."""
    e = np.asarray(expression, np.float64).reshape(-1)
    return {str(n): float(e[k]) for k, n in enumerate(names) if k < len(e)}


def face_textures(result: FaceResult, data, size: int = TEXTURE_SIZE) -> dict[str, np.ndarray]:
    """``albedo`` (S, S, 3), ``photo`` (S, S, 4) RGBA (alpha = seen) and ``texture`` (S, S, 3),
    the material's: the photo where seen over the gain-matched albedo, bled past the UV islands."""
    from facetwin.appearance.albedo import check_uv_layout, load_albedo_model
    from facetwin.export.asset import paint_eyes
    from facetwin.export.textures import albedo_texture, bleed, blend_photo_over_albedo, uv_coverage

    out: dict[str, np.ndarray] = {}
    albedo = None
    try:
        model = load_albedo_model(output_size=size)
        check_uv_layout(model, _source_head_data(result.head_model))  # built in the model's own layout
        albedo = albedo_texture(result.params.get("albedo"), size, model)
        if data.meta.get("export_layout"):
            albedo = paint_eyes(albedo)
    except FacetwinError:
        albedo = None  # another head model's UV layout: no albedo texture
    covered = uv_coverage(data, size)
    if albedo is not None:
        out["albedo"] = bleed(albedo, covered)
    if result.photo_texture is not None:
        import cv2

        photo, vis = result.photo_texture, result.photo_visibility
        if photo.shape[0] != size:
            photo = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
            vis = cv2.resize(vis, (size, size), interpolation=cv2.INTER_NEAREST)
        out["photo"] = np.concatenate([photo, vis[..., None]], -1)
        base = albedo if albedo is not None else np.full_like(photo, 180)
        blended = blend_photo_over_albedo(photo, vis, base)
        if data.meta.get("export_layout"):  # unseen eye texels: the plain eye, not gain-tinted albedo
            painted = paint_eyes(blended)
            fill = (painted != blended).any(-1) & (vis < 128)
            blended[fill] = painted[fill]
        out["texture"] = bleed(blended, covered)
    elif albedo is not None:
        out["texture"] = out["albedo"]
    return out


def export_result(result: FaceResult, out: str | Path, name: str, formats=FORMATS, texture_size: int = TEXTURE_SIZE,
                  animation=None, data=None, textures: dict | None = None) -> dict[str, str]:
    """Write the exports of one face into ``out``; returns ``{kind: path}``.

    Files: ``<name>_albedo.png``, ``<name>_photo.png`` and, per format, ``<name>.glb`` (rigged,
    morph targets, textured) and ``<name>.obj`` + ``<name>.mtl`` + ``<name>.png`` (the posed mesh as
    the camera saw it). ``animation``: see :func:`facetwin.export.write_glb`.
    """
    from facetwin.export.asset import build_face_asset
    from facetwin.export.gltf import write_glb
    from facetwin.export.obj import write_obj
    from facetwin.outputs import ensure_dir, write_image

    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise FacetwinError(f"unknown export format {bad[0]!r} (choose from {', '.join(FORMATS)})")
    out = ensure_dir(out)
    data = data or _head_data(result.head_model)
    if data.uv_coords is None:
        raise FacetwinError(f"head model '{data.name}' has no UV layout; cannot export textures")
    tex = textures if textures is not None else face_textures(result, data, texture_size)
    files: dict[str, str] = {}
    for kind in ("albedo", "photo"):
        if kind in tex:
            files[kind] = str(write_image(out / f"{name}_{kind}.png", tex[kind]))
    if "obj" in formats:
        written = write_obj(out / f"{name}.obj", result.vertices, data.faces, data.uv_coords, data.uv_faces, tex.get("texture"))
        for fname, path in written.items():
            files[{".obj": "obj", ".mtl": "mtl", ".png": "texture"}.get(Path(fname).suffix, fname)] = str(path)
    if "glb" in formats:
        p = result.params
        maps = {"base_color": tex["texture"]} if "texture" in tex else {}
        if "normal" in tex:  # the detail normal map (tangent space, export layout; export/details.py)
            maps["normal"] = tex["normal"]
        asset = build_face_asset(data, p.get("shape"), p.get("expression"), p.get("pose"), textures=maps)
        files["glb"] = str(write_glb(asset, out / f"{name}.glb", animation=animation, name=name))
    return files


AXES = "metres; model frame = glTF frame: y up, +z out of the face (towards a frontal camera), x towards the subject's left"


def write_result_files(res, out: str | Path, name: str, formats=FORMATS, head_model: str = "open",
                       texture_size: int = TEXTURE_SIZE, overlay: bool = True, animation=None) -> dict:
    """Every per-face file of ``facetwin reconstruct`` (see docs/outputs.md) for a Reconstruction
    ``res`` (duck-typed): ``<name>.npz``, ``<name>.json``, ``<name>_overlay.png`` and the exports
    of :func:`export_result` (``animation`` goes into the GLB). Returns ``{"name", "files":
    {kind: path}, "textures": {kind: (S, S, C) uint8}, "overlay_image": (H, W, 3) uint8, ...}``.

    Exports need the head model's UV layout; for a head model without one (a user's FLAME) the
    OBJ is written without UVs and texture and the GLB is skipped, saying so in the JSON.
    """
    from facetwin.outputs import ensure_dir, write_image, write_json

    out = ensure_dir(out)
    data = _head_data(head_model)
    notes = []
    files: dict[str, str] = {}
    fits = data.uv_coords is not None and data.n_vertices == len(res.vertices)
    if fits:
        result = FaceResult.from_reconstruction(res, head_model, data, texture_size)
        textures = face_textures(result, data, texture_size)
        detail = getattr(res, "detail", None)
        if detail is not None and data.has_detail_uv:  # D, detail normals, the displaced mesh (export/details.py)
            from facetwin.export.details import write_detail_files

            dfiles = write_detail_files(detail, out, name, data, res.vertices, textures.get("texture"), texture_size)
            textures = dict(textures, normal=dfiles.pop("_normal_map"))
            files.update(dfiles)
        files.update(export_result(result, out, name, formats, texture_size, animation=animation, data=data, textures=textures))
    else:
        result = FaceResult(params={k: np.asarray(v) for k, v in res.params.items()}, vertices=np.asarray(res.vertices, np.float32),
                            scale=float(res.scale), translation=np.asarray(res.translation, np.float64), head_model=head_model)
        textures = {}
        notes.append(f"head model '{data.name}' has no UV layout for this mesh: plain OBJ, no textures, no GLB")
        if "obj" in formats:
            files["obj"] = str(_plain_obj(out / f"{name}.obj", res.vertices, res.faces))
    overlay_image = res.overlay() if overlay else None
    if overlay:
        files["overlay"] = str(write_image(out / f"{name}_overlay.png", overlay_image))
    arrays = result.npz_arrays()
    arrays.update(faces=np.asarray(res.faces), landmarks2d=res.landmarks2d, landmarks3d=res.landmarks3d,
                  crop_transform=res.crop_transform, image_size=np.asarray(res.image.shape[:2]),
                  expression_names=np.array(list(data.expression_names), dtype=str))
    detail = getattr(res, "detail", None)
    if detail is not None:
        arrays.update(detail.arrays())
    files["npz"] = str(_write_npz(out / f"{name}.npz", arrays))
    summary = res.to_dict()
    summary.update(
        name=name, head_model=head_model, image_size=list(res.image.shape[:2]), units=AXES,
        expression_weights=named_expression(data.expression_names, res.params["expression"]),
        pose_names=["global", "neck", "jaw", "eye_left", "eye_right"], files={k: Path(v).name for k, v in files.items()},
    )
    if detail is not None:
        on = np.abs(detail.displacement) > 0
        summary["detail"] = {"model": detail.model, "map_size": int(detail.displacement.shape[0]),
                             "mean_abs_displacement_mm": float(1000 * np.abs(detail.displacement[on]).mean()) if on.any() else 0.0,
                             "max_abs_displacement_mm": float(1000 * np.abs(detail.displacement).max()),
                             "units": "metres along the coarse normal, detail UV layout (docs/detail.md)"}
    if notes:
        summary["notes"] = notes
    files["json"] = str(write_json(out / f"{name}.json", summary))
    return {"name": name, "files": files, "overlay": files.get("overlay"), "obj": files.get("obj"), "glb": files.get("glb"),
            "textures": textures, "overlay_image": overlay_image}


def _write_npz(path: Path, arrays: dict) -> Path:
    from facetwin.outputs import atomic_write

    with atomic_write(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def _plain_obj(path: Path, vertices, faces) -> Path:
    import trimesh

    from facetwin.outputs import write_text

    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces), process=False)
    return write_text(path, trimesh.exchange.obj.export_obj(mesh, include_normals=True, include_texture=False))


def result_glb(result: FaceResult, name: str = "face", animation=None, texture_size: int = TEXTURE_SIZE) -> bytes:
    """The GLB of one face, in memory (for pages)."""
    from facetwin.export.asset import build_face_asset
    from facetwin.export.gltf import glb_bytes

    data = _head_data(result.head_model)
    tex = face_textures(result, data, texture_size)
    p = result.params
    asset = build_face_asset(data, p.get("shape"), p.get("expression"), p.get("pose"),
                             textures={"base_color": tex["texture"]} if "texture" in tex else {})
    return glb_bytes(asset, animation, name)


def read_glb_or_result(path: str | Path) -> bytes:
    """The GLB bytes of a ``.glb`` file or of a result ``.npz``."""
    path = Path(path)
    if path.suffix.lower() == ".glb":
        data = path.read_bytes()
        if data[:4] != b"glTF":
            raise FacetwinError(f"{path} is not a GLB file")
        return data
    if path.suffix.lower() == ".npz":
        return result_glb(FaceResult.from_npz(path), path.stem)
    raise FacetwinError(f"{path}: expected a .glb or a result .npz")
