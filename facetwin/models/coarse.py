"""The coarse model (paper section 3.2): encoder → head model → orthographic camera → landmarks,
silhouette vertices, (optionally) albedo + SH-shaded render → :class:`CoarseLossInputs`.

One forward for training, evaluation and inference: the stage (``training/coarse_stage.py``)
only schedules it (:meth:`CoarseModel.loss_inputs`), inference and evaluation call
:meth:`CoarseModel.forward` / :meth:`CoarseModel.image_landmarks`. The model file of the
encoder is written and read here through :mod:`facetwin.models.files` (:func:`export_encoder`,
:func:`load_coarse_model`), with the properties inference needs (input size, crop rule, contour
convention).

The trainable part is only the encoder (the module the training engine wraps in DDP); the head
model, albedo model and renderer are fixed and evaluated here, in float32, after the encoder
(which may run under bf16 autocast).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetwin.errors import FacetwinError
from facetwin.geometry.camera import orthographic_screen_vertices, project_orthographic
from facetwin.geometry.mesh import edges as mesh_edges
from facetwin.geometry.mesh import vertex_normals
from facetwin.geometry.rotation import head_yaw
from facetwin.headmodel.marching import contour_table, dynamic_contour_points, select_dynamic_contour
from facetwin.losses.coarse import CoarseLossInputs, CoarseLossWeights
from facetwin.losses.consistency import identity_swap_permutation
from facetwin.models import files
from facetwin.networks import coarse_encoder as enc
from facetwin.networks.coarse_encoder import CoarseEncoder, CoarseParams, HeadLayout, build_from_config
from facetwin.networks.identity_head import IdentityHead, build_identity_head
from facetwin.paths import CHECKPOINTS_DIR
from facetwin.rendering.silhouette import landmark_normal_z, nearest_silhouette_vertex

DEFAULT_MODEL_FILE = CHECKPOINTS_DIR / "coarse_encoder.safetensors"
MODEL_FILE_NAME = "coarse_encoder.safetensors"
# Crop side the identity head's face chip is cut from: dlib's 150² chip covers ~2/3 of a crop,
# so a 224² crop gives it its native resolution (a 128² crop would be upsampled).
IDENTITY_INPUT_SIZE = 224
# Landmarks the camera is re-fitted to after the identity head changed β: the inner points
# (the contour's placement depends on the convention, the inner points' does not).
_INNER = slice(17, 68)


@dataclass
class CoarseModelConfig:
    """The coarse network (the ``model:`` section of a coarse config). Its encoder description
    is stored in the model file, so inference rebuilds exactly this network."""

    size: str = "tiny"            # tiny | small | base
    image_size: int = 128         # encoder input side (pixels)
    hidden: int = enc.HIDDEN
    head_model: str = "open"
    n_shape: int = 0              # predicted identity components (0 = all of the head model)
    n_expr: int = 0               # predicted expression components (0 = all)
    face_fraction: float = enc.FACE_FRACTION  # template landmark width / crop width at zero camera output
    centre_y: float = enc.CENTRE_Y            # template landmark centre height / crop height at zero output
    predict_jaw: bool = True
    head_init_std: float = enc.HEAD_INIT_STD  # std of the last layer's initial weights
    pretrained: str = ""          # a vit-pretrain / MAE / timm ViT model file to start from ('' = scratch)
    init_checkpoint: str = ""     # a coarse-encoder model file to start from (fine-tuning, warm restart)

    def __post_init__(self):
        if self.size not in ("tiny", "small", "base"):
            raise FacetwinError(f"model.size must be tiny, small or base, not {self.size!r}")
        for name in ("image_size", "hidden"):
            if getattr(self, name) < 16:
                raise FacetwinError(f"model.{name} must be at least 16, got {getattr(self, name)}")
        if self.image_size % 16:
            raise FacetwinError(f"model.image_size must be a multiple of the 16-pixel patch, got {self.image_size}")
        if self.n_shape < 0 or self.n_expr < 0:
            raise FacetwinError("model.n_shape / model.n_expr must be >= 0")
        if not 0 < self.face_fraction <= 1:
            raise FacetwinError(f"model.face_fraction must be in (0, 1], got {self.face_fraction}")


def build_encoder(model: CoarseModelConfig, head_model, n_albedo: int) -> CoarseEncoder:
    """A fresh encoder for ``head_model`` with ``n_albedo`` albedo coefficients."""
    layout = HeadLayout.from_head_model(head_model, n_albedo, model.n_shape or None, model.n_expr or None)
    return CoarseEncoder(layout, size=model.size, image_size=model.image_size, hidden=model.hidden,
                         face_fraction=model.face_fraction, predict_jaw=model.predict_jaw,
                         head_init_std=model.head_init_std, centre_y=model.centre_y)


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


class CoarseModel(nn.Module):
    """Encoder + fixed head model (+ optional albedo model and renderer, :meth:`attach_renderer`)."""

    def __init__(self, encoder: CoarseEncoder, head_model, albedo_model=None, identity_head: IdentityHead | None = None):
        super().__init__()
        self.encoder = encoder
        self.identity_head = identity_head
        self.head_model = head_model
        self.albedo_model = albedo_model
        self.renderer = None
        self.render_size = 0
        self._face_triangles = None  # (F,) bool, built on first use (face_region)
        self._size_dirs = None       # (d, g) of without_size_change, built on first use
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
        table = contour_table(data)
        self.has_marching = table is not None
        if self.has_marching:
            self.register_buffer("dyn_faces", table[0], persistent=False)
            self.register_buffer("dyn_bary", table[1], persistent=False)
            self.register_buffer("dyn_yaw", table[2], persistent=False)

    def attach_renderer(self, size: int) -> bool:
        """Build the differentiable renderer at ``size``² (the photometric / identity terms);
        False when the head model has no UV layout for the albedo model."""
        from facetwin.rendering import MeshRenderer

        data = self.head_model.data
        uv, uvf = data.uv_coords, data.uv_faces
        if uv is None:
            if not isinstance(self.albedo_model, UniformAlbedo):
                return False
            uv, uvf = np.zeros((1, 2), np.float32), np.zeros_like(data.faces)  # uniform albedo: any UV works
        dev = self.edges.device
        self.renderer = MeshRenderer(data.faces, uv, uvf, size).to(dev)
        self.render_size = size
        return True

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

    def landmarks2d(self, params: CoarseParams, crop_size: int, shape: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 68, 2) crop pixels: :meth:`geometry`'s ``landmarks2d`` without the rest of the mesh
        (:meth:`HeadModel.landmarks`), for camera fits and descriptor chips. ``shape`` overrides β."""
        params = params.to(torch.float32) if params.scale.dtype in (torch.float16, torch.bfloat16) else params
        hm = self.head_model
        lmk = hm.landmarks(_pad(params.shape if shape is None else shape, hm.n_shape), _pad(params.expression, hm.n_expr), params.pose)
        return project_orthographic(lmk, *params.camera_pixels(crop_size))

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
        yaw = head_yaw(geo.params.pose.float()).detach()
        faces, bary = select_dynamic_contour(yaw, self.dyn_faces, self.dyn_bary, self.dyn_yaw)
        pts = dynamic_contour_points(geo.vertices, self.head_model.faces, faces, bary)  # (B, 17, 3)
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
        static = geo.landmarks2d[:, :17]
        outline = self.silhouette(geo, unoccluded_size=geo.crop_size)
        nearest = nearest_silhouette_vertex(geo.vertices2d, outline, static)  # (B, 17), -1: no outline
        on_outline = torch.gather(geo.vertices2d, 1, nearest.clamp_min(0)[..., None].expand(-1, -1, 2))
        move = (geo.landmarks_normal_z[:, :17] <= 0) & (nearest >= 0)
        contour = torch.where(move[..., None], on_outline, static)
        return torch.cat([contour, geo.landmarks2d[:, 17:]], 1)

    def swapped_landmarks(self, geo: CoarseGeometry, identity: torch.Tensor) -> torch.Tensor | None:
        """(B, 68, 2) landmarks with β taken from another image of the same identity, or None
        when no image in the batch shares its identity with another."""
        partner = identity_swap_permutation(identity)
        if torch.equal(partner, torch.arange(len(partner), device=partner.device)):
            return None
        return self.landmarks2d(geo.params, geo.crop_size, shape=geo.params.shape[partner])

    @property
    def input_size(self) -> int:
        """Side of the crops this model wants (pixels): the encoder's input size, or
        :data:`IDENTITY_INPUT_SIZE` with an identity head (the encoder resizes them itself)."""
        return IDENTITY_INPUT_SIZE if self.identity_head is not None else self.encoder.image_size

    def descriptor(self) -> nn.Module:
        """dlib's frozen face descriptor (shared, not part of this model's state)."""
        from facetwin.losses.identity import default_descriptor

        return default_descriptor(self.edges.device)

    @torch.no_grad()
    def identity_descriptor(self, params: CoarseParams, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(descriptor (B, 128), landmarks (B, 68, 2) crop pixels) of the photos: dlib's chip
        aligned by the landmarks the encoder's parameters project to (no labels at inference)."""
        l2d = self.landmarks2d(params.detach(), images.shape[-1])
        return self.chip_descriptor(images, l2d), l2d

    @torch.no_grad()
    def chip_descriptor(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """(B, 128) dlib descriptor of the chips of ``images`` (B, 3, S, S) aligned by ``landmarks``
        (B, 68, 2) crop pixels; no gradient (the descriptor is frozen, the chip a fixed crop)."""
        from facetwin.losses.identity import face_chips

        return self.descriptor()(face_chips(images.float(), landmarks.detach()))

    def with_identity(self, params: CoarseParams, delta: torch.Tensor, landmarks: torch.Tensor, crop_size: int) -> CoarseParams:
        """``params`` with β + ``delta`` (B, n_shape) (its size-changing part removed) and the
        camera re-fitted (:meth:`with_shape`). Exact for ``delta = 0``."""
        params = params.to(torch.float32) if params.scale.dtype != torch.float32 else params
        return self.with_shape(params, params.shape + self.without_size_change(delta.to(params.shape.dtype)), landmarks, crop_size)

    def with_shape(self, params: CoarseParams, shape: torch.Tensor, landmarks: torch.Tensor, crop_size: int) -> CoarseParams:
        """``params`` with β = ``shape`` (B, n_shape) and the camera re-fitted (least-squares scale
        and translation) so the inner landmarks stay where ``params`` put them (``landmarks``
        (B, 68, 2) crop pixels): another identity changes the face's shape, not its place and size
        in the photo."""
        params = params.to(torch.float32) if params.scale.dtype != torch.float32 else params
        hm = self.head_model
        lmk = hm.landmarks(_pad(shape, hm.n_shape), _pad(params.expression, hm.n_expr), params.pose)
        unit = project_orthographic(lmk[:, _INNER], torch.ones_like(params.scale), torch.zeros_like(params.translation))
        target = landmarks[:, _INNER].to(unit.dtype)
        pu, pt = unit - unit.mean(1, keepdim=True), target - target.mean(1, keepdim=True)
        s = (pu * pt).sum((1, 2)) / pu.pow(2).sum((1, 2)).clamp_min(1e-12)  # pixels per metre
        t = target.mean(1) - s[:, None] * unit.mean(1)
        return CoarseParams(shape=shape, expression=params.expression, pose=params.pose, albedo=params.albedo,
                            light=params.light, scale=s / crop_size, translation=t / crop_size)

    def without_size_change(self, delta: torch.Tensor) -> torch.Tensor:
        """(B, k) Δβ minus its uniform-scaling part: the component of the mesh change ``B Δβ``
        along ``B d``, where ``d`` is the β direction that best scales the template about its
        centroid (least squares; the open model's basis reproduces a uniform scale to 9 %).

        Under the orthographic camera the size of a head is unobservable (the re-fitted camera
        absorbs it exactly), so an identity learned from images must not change it: without this
        the identity head shrank every head to ~72 % of the template's size (metres in exports)."""
        k = delta.shape[-1]
        if getattr(self, "_size_dirs", None) is None or self._size_dirs[0].shape[0] != k:
            hm = self.head_model
            B = hm.shapedirs[:k].T.double()  # (3V, k)
            t = hm.v_template.double()
            d = torch.linalg.lstsq(B, (t - t.mean(0)).reshape(-1, 1)).solution[:, 0]  # (k,)
            g = B.T @ (B @ d)  # (k,): <B x, B d> = x · g
            self._size_dirs = (d.float().to(delta.device), (g / (d @ g)).float().to(delta.device))
        d, g = self._size_dirs
        return delta - (delta.float() @ g)[:, None].to(delta.dtype) * d.to(delta.dtype)

    def complete(self, params: CoarseParams, images: torch.Tensor, encoder: nn.Module | None = None,
                 shape: torch.Tensor | None = None) -> CoarseParams:
        """What follows the encoder (``encoder``, default this model's, produced ``params`` from
        ``images`` (B, 3, H, W)): one β for every image — ``shape`` (n_shape,) when given (a person
        run's trained β), else a person's fixed β (``encoder.fixed_shape``, see
        :func:`facetwin.models.person.fix_shape`) — with the camera re-fitted to it, else the identity
        head's correction; unchanged without either."""
        fixed = shape if shape is not None else getattr(encoder if encoder is not None else self.encoder, "fixed_shape", None)
        if fixed is None and self.identity_head is None:
            return params
        # the camera re-fit's target, differentiable: detached, it would pin the inner landmarks'
        # place and size to the encoder's own guess and a training run could never correct it
        l2d = self.landmarks2d(params, images.shape[-1])
        if fixed is not None:
            beta = fixed.to(params.shape.device, torch.float32).reshape(1, -1).expand(params.shape.shape[0], -1)
            return self.with_shape(params, beta, l2d, images.shape[-1])
        return self.with_identity(params, self.identity_head(self.chip_descriptor(images, l2d)), l2d, images.shape[-1])

    def use_onnxruntime(self, on: bool = True) -> bool:
        """Run the encoder's network and the identity head's face descriptor through onnxruntime at
        inference (:mod:`facetwin.networks.onnx_runtime`: 1.3–2× faster at batch 1 on CPU) when it is
        installed and not turned off (``FACETWIN_BACKEND``), on CPU; ``on=False`` goes back to torch.
        Call it again after the encoder's weights change (a person attached). Returns whether it is on."""
        from facetwin.losses.identity import CHIP_SIZE
        from facetwin.networks import onnx_runtime

        size = self.encoder.image_size
        on = onnx_runtime.attach(self.encoder, (torch.zeros(1, 3, size, size),), "coarse-encoder", method="raw", on=on)
        if self.identity_head is not None:
            onnx_runtime.attach(self.descriptor(), (torch.zeros(1, 3, CHIP_SIZE, CHIP_SIZE),), "dlib-descriptor", on=on)
        return on

    def predict(self, images: torch.Tensor) -> CoarseParams:
        """(B, 3, H, W) crops in [0, 1] → parameters (the encoder, then :meth:`complete`)."""
        return self.complete(self.encoder(self.encoder_input(images)), images)

    def forward(self, images: torch.Tensor) -> CoarseGeometry:
        """(B, 3, H, W) crops in [0, 1] → geometry in the crop's pixels."""
        return self.geometry(self.predict(images), images.shape[-1])


    # -- training: the loss inputs -----------------------------------------------------------
    def render(self, geo: CoarseGeometry) -> tuple[torch.Tensor, torch.Tensor, object]:
        """(render (B, 3, R, R) in [0, 1], mask (B, 1, R, R), its Fragments) at ``render_size`` R."""
        f = self.render_size / geo.crop_size
        screen = orthographic_screen_vertices(geo.vertices, geo.scale_px * f, geo.translation_px * f)
        albedo = self.albedo_model(geo.params.albedo)
        out = self.renderer.render(screen, geo.vertices, albedo, geo.params.light)
        return out.image.clamp(0, 1), out.mask, out.fragments

    def face_region(self, fragments) -> torch.Tensor:
        """(B, 1, R, R) pixels of a rasterisation (``fragments``) covered by the face region: no
        scalp, ears or neck (:data:`facetwin.rendering.regions.FACE_REGIONS`). What the
        ``loss.perceptual_region: face`` composite pastes over the photo (its hair stays)."""
        from facetwin.rendering.regions import region_mask, region_triangles

        if self._face_triangles is None:
            data = self.head_model.data
            self._face_triangles = torch.as_tensor(region_triangles(data.faces, data.masks))
        return region_mask(fragments, self._face_triangles)

    def loss_inputs(self, params: CoarseParams, batch: dict, weights: CoarseLossWeights,
                    with_render: bool = True, prior_shape: torch.Tensor | None = None) -> tuple[CoarseLossInputs, CoarseGeometry]:
        """Everything the coarse losses read for one batch, and the geometry.

        ``params``: the encoder's output for ``batch["image"]`` (the caller runs the encoder, so
        that the training engine's DDP wrapper and autocast apply). Batch keys (the prepared-data
        vocabulary of :mod:`facetwin.data.prepared`): ``image`` (B, 3, S, S) in [0, 1],
        ``landmarks`` (B, 68, 2) crop pixels, optional ``skin`` / ``occluder`` (B, 1, S, S),
        ``identity`` (B,) (negative = unknown; L_sc and ``loss.shape_spread``), ``landmark_weight`` (B, 68).
        ``prior_shape`` (B, n_shape): the β the shape prior acts on, when ``params.shape`` holds a
        fixed offset the run does not train (:attr:`CoarseLossInputs.prior_shape`).
        With a render (``with_render`` and :meth:`attach_renderer` done) every image quantity is
        at the render size R and pixel coordinates are scaled by R / S; the landmark terms are
        normalised by the image size, so they do not change.
        """
        images = batch["image"].float()
        geo = self.geometry(params, images.shape[-1])
        render = render_mask = fragments = None
        if with_render and self.renderer is not None:
            render, render_mask, fragments = self.render(geo)
        # the outline test reuses the render's z-buffer (same camera, same size) when there is one
        outline_size = (self.render_size or geo.crop_size) if weights.silhouette_outline else None
        sil = self.silhouette(geo, outline_size, fragments)
        swapped = None
        if weights.shape_consistency > 0 and "identity" in batch:
            swapped = self.swapped_landmarks(geo, batch["identity"])
        dyn = None
        if weights.contour_mode == "marching":
            dyn = self.marching_contour(geo)
            if dyn is None:
                dyn = geo.landmarks2d[:, :17]  # static contour when the head model has no marching table
        p = geo.params
        image_r, skin, occ = images, batch.get("skin"), batch.get("occluder")
        f = 1.0
        if render is not None and render.shape[-1] != images.shape[-1]:
            R = render.shape[-1]
            image_r = F.interpolate(images, size=(R, R), mode="bilinear", align_corners=False, antialias=True)
            skin = None if skin is None else (F.interpolate(skin.float(), size=(R, R), mode="area") > 0.5).float()
            occ = None if occ is None else (F.interpolate(occ.float(), size=(R, R), mode="area") > 0.0).float()
            f = R / images.shape[-1]
        inputs = CoarseLossInputs(
            landmarks2d=geo.landmarks2d * f, landmarks_normal_z=geo.landmarks_normal_z, vertices2d=geo.vertices2d * f,
            silhouette=sil, shape=p.shape, expression=p.expression, albedo=p.albedo, light=p.light,
            image=image_r, gt_landmarks=batch["landmarks"].float() * f, render=render, render_mask=render_mask,
            swapped_landmarks2d=None if swapped is None else swapped * f, dynamic_contour2d=None if dyn is None else dyn * f,
            pose=p.pose, skin_mask=skin, occluder_mask=occ, landmark_weight=batch.get("landmark_weight"),
            perceptual_mask=self.face_region(fragments) if fragments is not None and weights.perceptual_region == "face" else None,
            identity=batch.get("identity"), prior_shape=prior_shape,
        )
        return inputs, geo

    def picture(self, inputs: CoarseLossInputs, geo: CoarseGeometry, max_rows: int = 6) -> np.ndarray:
        """Training picture, one row per image: input · overlay · render · landmarks (ground truth
        green, projected model landmarks red, silhouette vertices blue); (H, W, 3) uint8."""
        from facetwin.rendering.visualize import draw_landmarks, overlay, render_geometry, to_uint8

        rows = []
        S = inputs.image.shape[-1]
        f = S / geo.crop_size
        for i in range(min(inputs.image.shape[0], max_rows)):
            img = to_uint8(inputs.image[i])
            if inputs.render is not None:
                render, alpha = to_uint8(inputs.render[i]), inputs.render_mask[i, 0].detach().float().cpu().numpy()
            else:
                render, alpha = render_geometry(geo.vertices[i].detach(), self.head_model.faces, geo.scale_px[i].detach() * f,
                                                geo.translation_px[i].detach() * f, S)
            sil = inputs.silhouette[i].cpu().numpy()
            lmk = draw_landmarks(img, pred=inputs.landmarks2d[i], gt=inputs.gt_landmarks[i],
                                 extra=inputs.vertices2d[i].detach().cpu().numpy()[sil], radius=1.0)
            rows.append(np.concatenate([img, overlay(img, render, alpha, 0.6), render, lmk], 1))
        return np.concatenate(rows, 0)


class UniformAlbedo(nn.Module):
    """Stand-in albedo (``render.albedo: uniform``): coefficients 0..2 are an RGB offset from a
    mean skin tone; texture (B, 3, 2, 2). For head models without a UV layout and for tests."""

    n_coefficients = 3

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        base = coeffs.new_tensor([0.62, 0.45, 0.38])
        rgb = (base + 0.1 * coeffs[:, :3]).clamp(0, 1)
        return rgb[:, :, None, None].expand(-1, -1, 2, 2)


def load_albedo(kind: str = "open"):
    """The albedo model of a coarse model: ``"open"`` (the shipped open albedo model; a
    FacetwinError saying why when it cannot be loaded) or ``"uniform"`` (:class:`UniformAlbedo`)."""
    if kind == "uniform":
        return UniformAlbedo()
    if kind != "open":
        raise FacetwinError(f"render.albedo must be 'open' or 'uniform', not {kind!r}")
    try:
        from facetwin.appearance import load_albedo_model

        return load_albedo_model()
    except Exception as exc:  # a broken install must stop the run, not silently change the model
        raise FacetwinError(f"cannot load the open albedo model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                            "set render.albedo=uniform to train without it") from None


# -- the model file -------------------------------------------------------------------------

IDENTITY_PREFIX = "identity_head."


def export_encoder(encoder: CoarseEncoder, path: str | Path, head_model_name: str, contour: str = "silhouette",
                   step: int = 0, config: dict | None = None, command: str = "", init_steps: int = 0,
                   identity_head: IdentityHead | None = None, extra: dict | None = None) -> Path:
    """Write the coarse model file (fp16 safetensors + JSON sidecar, :mod:`facetwin.models.files`):
    the encoder and, when given, the identity head (tensors under ``identity_head.``).

    ``contour``: the contour convention it was trained with (``loss.contour_mode``), stored with
    the input size and crop rule as the model's ``inference`` properties. ``step``: this run's
    steps; ``total_steps`` adds those of the model file it started from (``init_steps``).
    ``extra``: more metadata (e.g. the identity stage's base model).
    """
    input_size = IDENTITY_INPUT_SIZE if identity_head is not None else encoder.image_size
    meta = {"encoder": encoder.config(), "head_model": head_model_name,
            "inference": files.coarse_inference_properties(input_size, contour),
            "step": step, "total_steps": init_steps + step, "train_config": config or {}, "command": command,
            **(extra or {})}
    state = dict(encoder.state_dict())
    if identity_head is not None:
        meta["identity_head"] = identity_head.config()
        state.update({IDENTITY_PREFIX + k: v for k, v in identity_head.state_dict().items()})
    return files.write_model_file(path, state, files.COARSE_ENCODER, meta)


def resolve_model_file(model_file: str | Path | None) -> Path:
    """``"default"`` / None (the shipped model), a ``.safetensors`` model file or a training run
    folder (its ``export/coarse_encoder.safetensors``)."""
    if model_file in (None, "", "default"):
        if not DEFAULT_MODEL_FILE.is_file():
            raise FacetwinError(f"the shipped coarse model file is missing ({DEFAULT_MODEL_FILE}); pass a model file (.safetensors) instead")
        return DEFAULT_MODEL_FILE
    path = Path(model_file)
    if path.is_dir():  # a training run folder
        for cand in (path / "export" / MODEL_FILE_NAME, path / MODEL_FILE_NAME):
            if cand.is_file():
                return cand
        raise FacetwinError(f"no {MODEL_FILE_NAME} in {path}")
    if not path.is_file():
        raise FacetwinError(f"model file not found: {path}")
    return path


def read_encoder(model_file: str | Path, head_model=None) -> tuple[CoarseEncoder, dict, IdentityHead | None]:
    """(encoder with its weights, metadata, identity head or None) of a coarse-encoder model file
    (read once); ``head_model`` (optional) is checked against the layout the encoder was trained for."""
    path = resolve_model_file(model_file)
    state, meta = files.read_model_file(path, files.COARSE_ENCODER)
    if "encoder" not in meta:
        raise FacetwinError(f"{path.name} has no encoder description")
    layout = meta["encoder"]["layout"]
    if head_model is not None and (layout["n_shape"] > head_model.n_shape or layout["n_expr"] > head_model.n_expr):
        raise FacetwinError(
            f"{path.name} was trained for a head model with {layout['n_shape']} identity / {layout['n_expr']} expression "
            f"components; '{head_model.name}' has {head_model.n_shape} / {head_model.n_expr}"
        )
    encoder = build_from_config(meta["encoder"])
    enc_state = {k: v for k, v in state.items() if not k.startswith(IDENTITY_PREFIX)}
    try:
        encoder.load_state_dict(enc_state)
    except RuntimeError as exc:
        raise FacetwinError(f"{path.name} does not match its own encoder description: {str(exc).splitlines()[0]}") from None
    return encoder, meta, identity_head_from(state, meta, path.name)


def identity_head_from(state: dict, meta: dict, name: str) -> IdentityHead | None:
    """The identity head in a coarse model file's tensors and metadata (read by
    :func:`facetwin.models.files.read_model_file`), or None when it has none."""
    if not meta.get("identity_head"):
        return None
    try:
        head = build_identity_head(meta["identity_head"])
        head.load_state_dict({k[len(IDENTITY_PREFIX):]: v for k, v in state.items() if k.startswith(IDENTITY_PREFIX)})
    except (RuntimeError, ValueError, TypeError) as exc:
        raise FacetwinError(f"{name}: its identity head does not match its description: {str(exc).splitlines()[0]}") from None
    return head


def load_coarse_model(model_file: str | Path | None = "default", head_model: str | None = None,
                      device: str | torch.device = "cpu") -> tuple[CoarseModel, dict]:
    """(CoarseModel in eval mode, metadata) from a coarse-encoder model file; FacetwinError for a
    wrong file. ``meta["inference"]`` holds the input size, crop rule and contour convention."""
    from facetwin.headmodel import load_head_model

    path = resolve_model_file(model_file)
    meta = files.upgrade(files.read_metadata(path))
    head = load_head_model(head_model or meta.get("head_model", "open"))
    encoder, meta, identity_head = read_encoder(path, head)
    return CoarseModel(encoder, head, identity_head=identity_head).to(device).eval(), meta


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """Zero-pad (B, k) to (B, n) (the encoder may predict fewer components than the model has)."""
    if x.shape[1] == n:
        return x
    return torch.cat([x, x.new_zeros(x.shape[0], n - x.shape[1])], 1)
