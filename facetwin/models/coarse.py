"""The coarse model forward: encoder → head model → orthographic camera → landmarks, silhouette
vertices, (optionally) albedo + SH-shaded render → :class:`CoarseLossInputs`.

The trainable part is only the encoder (the module the training engine wraps in DDP); the head
model, albedo model and renderer are fixed and evaluated here, in float32, after the encoder
(which may run under bf16 autocast).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facetwin.geometry.camera import project_orthographic
from facetwin.geometry.mesh import edges as mesh_edges
from facetwin.geometry.mesh import vertex_normals
from facetwin.geometry.rotation import axis_angle_to_matrix
from facetwin.errors import FacetwinError
from facetwin.rendering.silhouette import landmark_normal_z
from facetwin.networks.coarse_encoder import CoarseEncoder, CoarseParams


@dataclass
class CoarseGeometry:
    """Geometry of one forward pass. Pixel quantities are in the crop given to :meth:`geometry`."""

    params: CoarseParams
    vertices: torch.Tensor        # (B, V, 3) posed, model units (metres)
    landmarks3d: torch.Tensor     # (B, 68, 3)
    normals: torch.Tensor         # (B, V, 3) unit vertex normals
    vertices2d: torch.Tensor      # (B, V, 2) crop pixels
    landmarks2d: torch.Tensor     # (B, 68, 2) crop pixels
    landmarks_normal_z: torch.Tensor  # (B, 68)
    scale_px: torch.Tensor        # (B,) pixels per metre
    translation_px: torch.Tensor  # (B, 2) pixels
    crop_size: int


def yaw_of(pose_global: torch.Tensor) -> torch.Tensor:
    """(B, 3) axis-angle → (B,) rotation about the model's y axis (radians, + turns the face to its left)."""
    R = axis_angle_to_matrix(pose_global)
    return torch.atan2(R[:, 0, 2], R[:, 2, 2])


class CoarseModel(nn.Module):
    """Encoder + fixed head model (+ optional albedo model and renderer)."""

    def __init__(self, encoder: CoarseEncoder, head_model, albedo_model=None):
        super().__init__()
        self.encoder = encoder
        self.head_model = head_model
        self.albedo_model = albedo_model
        for p in self.head_model.parameters():
            p.requires_grad_(False)
        data = head_model.data
        self.register_buffer("edges", mesh_edges(head_model.faces), persistent=False)
        cand = data.silhouette_candidates
        if cand is None:  # no candidate region: everything but nose and ears (Fig. 4b)
            import numpy as np

            cand = np.ones(data.n_vertices, bool)
            for region in ("nose", "ears"):
                if region in data.masks:
                    cand &= ~data.masks[region]
        self.register_buffer("silhouette_candidates", torch.as_tensor(cand, dtype=torch.bool), persistent=False)
        self.has_marching = data.dynamic_landmark_faces is not None
        if self.has_marching:
            self.register_buffer("dyn_faces", torch.as_tensor(data.dynamic_landmark_faces, dtype=torch.int64), persistent=False)
            self.register_buffer("dyn_bary", torch.as_tensor(data.dynamic_landmark_bary, dtype=torch.float32), persistent=False)
            self.register_buffer("dyn_yaw", torch.as_tensor(data.dynamic_landmark_yaw, dtype=torch.float32), persistent=False)

    # -- pieces ------------------------------------------------------------------------------
    def encoder_input(self, images: torch.Tensor) -> torch.Tensor:
        """Resize (B, 3, H, W) crops to the encoder's input size."""
        S = self.encoder.image_size
        if images.shape[-1] != S or images.shape[-2] != S:
            images = F.interpolate(images, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
        return images

    def geometry(self, params: CoarseParams, crop_size: int, shape: torch.Tensor | None = None) -> CoarseGeometry:
        """Head model + camera for parameters (float32). ``shape`` overrides β (shape swap)."""
        if params.scale.dtype in (torch.float16, torch.bfloat16):
            params = params.to(torch.float32)
        hm = self.head_model
        beta = params.shape if shape is None else shape
        beta = _pad(beta, hm.n_shape)
        expr = _pad(params.expression, hm.n_expr)
        out = hm(beta, expr, params.pose)
        s_px, t_px = params.camera_pixels(crop_size)
        v2d = project_orthographic(out.vertices, s_px, t_px)
        l2d = project_orthographic(out.landmarks, s_px, t_px)
        normals = vertex_normals(out.vertices, hm.faces)
        lmk_nz = landmark_normal_z(out.vertices, hm.faces, hm.landmark_faces, hm.landmark_bary, normals=normals)
        return CoarseGeometry(params, out.vertices, out.landmarks, normals, v2d, l2d, lmk_nz, s_px, t_px, crop_size)

    def silhouette(self, geo: CoarseGeometry, unoccluded_size: int | None = None, fragments=None) -> torch.Tensor:
        """(B, V) bool silhouette vertices within the candidate region.

        With ``unoccluded_size`` R, folds hidden behind nearer surface are dropped (z-buffer at
        R×R over the crop, 1 cm depth slack; :func:`~facetwin.rendering.silhouette.unoccluded_vertices`),
        leaving the outline of the head as seen; ``fragments``: a rasterisation at that size to
        reuse (the training render's).
        """
        from facetwin.rendering.silhouette import silhouette_vertices, unoccluded_vertices

        sil = silhouette_vertices(geo.vertices.detach(), self.head_model.faces, self.silhouette_candidates, edges=self.edges)
        if unoccluded_size:
            from facetwin.geometry.camera import orthographic_screen_vertices

            f = unoccluded_size / geo.crop_size
            screen = orthographic_screen_vertices(geo.vertices.detach(), geo.scale_px * f, geo.translation_px * f)
            sil = sil & unoccluded_vertices(screen, self.head_model.faces, unoccluded_size, 0.01 * geo.scale_px * f,
                                            fragments=fragments)
        return sil

    def marching_contour(self, geo: CoarseGeometry) -> torch.Tensor | None:
        """(B, 17, 2) FLAME-style dynamic contour landmarks for the pose's yaw (ablation)."""
        if not self.has_marching:
            return None
        yaw = yaw_of(geo.params.pose[:, 0].float()).detach()
        bins = (yaw[:, None] - self.dyn_yaw[None]).abs().argmin(1)  # (B,)
        faces = self.dyn_faces[bins]  # (B, 17)
        bary = self.dyn_bary[bins]    # (B, 17, 3)
        corners = geo.vertices[torch.arange(faces.shape[0], device=faces.device)[:, None, None], self.head_model.faces[faces]]
        pts = (corners * bary[..., None]).sum(-2)  # (B, 17, 3)
        return project_orthographic(pts, geo.scale_px, geo.translation_px)

    def image_landmarks(self, geo: CoarseGeometry, contour: str = "static") -> torch.Tensor:
        """(B, 68, 2) the landmarks as an annotator places them, in crop pixels.

        The inner points (18–68) are the projected mesh landmarks. The 17 contour points follow
        ``contour`` (use the convention the model was trained with to score it as trained):

        * ``"silhouette"`` (Eq. 1 at inference): a zero-pose boundary landmark that faces the
          camera is projected; an occluded one (normal z <= 0) moves to the nearest projected
          silhouette vertex on the visible outline (hidden folds dropped by a z-buffer at the
          crop's resolution), where annotators put it on a turned face;
        * ``"marching"``: FLAME's dynamic contour for the pose's yaw (the "w/o L_sil" ablation,
          DECA's "2D landmarks");
        * ``"static"``: the fixed mesh points, occluded or not.
        """
        if contour == "static":
            return geo.landmarks2d
        if contour == "marching":
            dyn = self.marching_contour(geo)
            if dyn is None:
                raise FacetwinError("this head model has no dynamic contour: use contour='silhouette' or 'static'")
            return torch.cat([dyn.to(geo.landmarks2d.dtype), geo.landmarks2d[:, 17:]], 1)
        if contour != "silhouette":
            raise FacetwinError(f"contour must be 'silhouette', 'marching' or 'static', not '{contour}'")
        from facetwin.losses.silhouette import match_silhouette

        static = geo.landmarks2d[:, :17]
        outline = self.silhouette(geo, unoccluded_size=geo.crop_size)
        match = match_silhouette(static, geo.landmarks_normal_z[:, :17], geo.vertices2d, outline, static)
        return torch.cat([match.target, geo.landmarks2d[:, 17:]], 1)

    def swapped_landmarks(self, geo: CoarseGeometry, identity: torch.Tensor) -> torch.Tensor | None:
        """(B, 68, 2) landmarks with β taken from another image of the same identity, or None
        when no image in the batch shares its identity with another."""
        partner = same_identity_partner(identity)
        if partner is None:
            return None
        swapped = self.geometry(geo.params, geo.crop_size, shape=geo.params.shape[partner])
        return swapped.landmarks2d

    def forward(self, images: torch.Tensor) -> CoarseGeometry:
        """(B, 3, H, W) crops in [0, 1] → geometry in the crop's pixels."""
        params = self.encoder(self.encoder_input(images))
        return self.geometry(params, images.shape[-1])


def same_identity_partner(identity: torch.Tensor) -> torch.Tensor | None:
    """For each i, the index of the next image with the same identity (cyclically), i itself
    when alone; None when nobody in the batch has a partner."""
    ids = identity.tolist()
    partner = list(range(len(ids)))
    groups: dict = {}
    for i, k in enumerate(ids):
        groups.setdefault(k, []).append(i)
    found = False
    for key, members in groups.items():
        if len(members) > 1 and key >= 0:  # negative identity = unknown
            found = True
            for a, b in zip(members, members[1:] + members[:1]):
                partner[a] = b
    if not found:
        return None
    return torch.tensor(partner, dtype=torch.long, device=identity.device)


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """Zero-pad (B, k) to (B, n) (the encoder may predict fewer components than the model has)."""
    if x.shape[1] == n:
        return x
    return torch.cat([x, x.new_zeros(x.shape[0], n - x.shape[1])], 1)
