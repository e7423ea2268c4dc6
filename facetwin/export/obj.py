"""Wavefront OBJ + MTL + texture PNG through trimesh: UVs (``vt``), smooth normals (``vn``) and a
material whose ``map_Kd`` is the face texture. Written atomically, every file beside the OBJ."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetwin.export.asset import smooth_normals, split_uv_seams


def obj_files(vertices: np.ndarray, faces: np.ndarray, uv_coords: np.ndarray, uv_faces: np.ndarray, texture: np.ndarray | None,
              name: str) -> dict[str, bytes]:
    """The files of one textured OBJ, ``{file name: content}``: ``<name>.obj``, ``<name>.mtl`` and
    ``<name>.png`` (when ``texture`` (S, S, 3) uint8 is given).

    Args:
        vertices: (V, 3) metres (welded, the head model's vertices); faces: (F, 3);
        uv_coords: (T, 2) v up; uv_faces: (F, 3).
    """
    import trimesh
    from PIL import Image

    split = split_uv_seams(faces, uv_coords, uv_faces)
    normals = smooth_normals(vertices, faces)[split.source]  # welded normals: no shading seams
    material = trimesh.visual.material.SimpleMaterial(
        image=Image.fromarray(texture) if texture is not None else None, diffuse=[255, 255, 255, 255],
        ambient=[255, 255, 255, 255], specular=[20, 20, 20, 255], glossiness=10.0, name=f"{name}_texture")
    mesh = trimesh.Trimesh(vertices=np.asarray(vertices, np.float64)[split.source], faces=split.faces,
                           vertex_normals=normals, visual=trimesh.visual.TextureVisuals(uv=split.uv, material=material),
                           process=False)
    text, extra = trimesh.exchange.obj.export_obj(mesh, include_normals=True, include_texture=True, return_texture=True,
                                                  mtl_name=f"{name}.mtl", header="facetwin: metres, y up, +z out of the face")
    # one smoothing group: importers (Blender) then shade with the vn normals instead of flat
    text = text.replace(f"usemtl {name}_texture\n", f"usemtl {name}_texture\ns 1\n", 1)
    files = {f"{name}.obj": text.encode("utf-8")}
    for fname, data in extra.items():
        files[fname] = data
    return files


def write_obj(path: str | Path, vertices, faces, uv_coords, uv_faces, texture=None) -> dict[str, Path]:
    """Write ``path`` (.obj) with its .mtl and texture beside it; returns ``{file name: path}``."""
    from facetwin.outputs import write_bytes

    path = Path(path)
    files = obj_files(vertices, faces, uv_coords, uv_faces, texture, path.stem)
    # texture and material first, the OBJ last: an OBJ on disk always has its material
    order = sorted(files, key=lambda f: f.endswith(".obj"))
    return {f: write_bytes(path.with_name(f), files[f]) for f in order}
