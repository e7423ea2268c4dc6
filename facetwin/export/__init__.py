"""Files other tools open: OBJ + MTL + PNG textures and GLB (glTF 2.0) with the 52 ARKit
expressions as named morph targets and the jaw, neck and eyes as a skin.

Layers: built on the head model, the albedo model and the renderer's UV tools; knows nothing
about networks or inference (the CLI and :mod:`facetwin.api` hand it plain arrays).

    from facetwin.export import FaceResult, export_result
    files = export_result(FaceResult.from_reconstruction(res, "open"), "out/", "face", formats=("glb", "obj"))

Axes and units everywhere: metres, the head model's frame = glTF's frame (y up, +z out of the
face, x towards the subject's left). See docs/outputs.md.
"""

from facetwin.export.asset import FaceAsset, build_face_asset, split_uv_seams
from facetwin.export.gltf import Animation, write_glb
from facetwin.export.obj import write_obj
from facetwin.export.result import FORMATS, FaceResult, export_result, write_result_files

__all__ = ["FORMATS", "Animation", "FaceAsset", "FaceResult", "build_face_asset", "export_result", "split_uv_seams",
           "write_glb", "write_obj", "write_result_files"]
