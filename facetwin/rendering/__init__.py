"""Differentiable rendering in plain PyTorch (CPU and CUDA, no compiler).

* :func:`rasterize` / :func:`interpolate` — z-buffer visibility + analytic barycentrics.
* :mod:`shading` — the paper's SH illumination (DECA constants).
* :class:`UVMapper` — UV-space attribute maps, image unwrapping, displacement, detail normals.
* :class:`MeshRenderer` — textured, SH-lit render in one call.
* :mod:`silhouette` — silhouette vertices (Eq. 1) and landmark occlusion.
* :mod:`visualize` — overlays, shaded geometry, landmark drawings (uint8 HWC RGB).

Conventions (image frame, cameras, depth, winding) are in :mod:`facetwin.geometry.camera`.
"""

from facetwin.rendering.rasterizer import Fragments, depth_map, interpolate, interpolate_packed, rasterize, scatter_pixels
from facetwin.rendering.renderer import MeshRenderer, RenderOutput
from facetwin.rendering.shading import default_lighting, sh_basis, sh_irradiance, shade
from facetwin.rendering.silhouette import landmark_normal_z, landmark_occluded, nearest_silhouette_vertex, silhouette_vertices
from facetwin.rendering.texture import sample_image, sample_texture
from facetwin.rendering.uv import UVMapper

__all__ = [
    "Fragments", "MeshRenderer", "RenderOutput", "UVMapper", "default_lighting", "depth_map", "interpolate",
    "interpolate_packed", "landmark_normal_z", "landmark_occluded", "nearest_silhouette_vertex", "rasterize",
    "sample_image", "sample_texture", "scatter_pixels", "sh_basis", "sh_irradiance", "shade", "silhouette_vertices",
]
