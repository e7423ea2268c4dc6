"""Single-image 3D face reconstruction with the coarse model — the library entry point.

    from facetwin.inference.reconstructor import FaceTwin
    ft = FaceTwin()                       # the shipped coarse encoder + the open head model
    result = ft.reconstruct("photo.jpg")  # or an (H, W, 3) uint8 RGB array
    result.landmarks2d                    # (68, 2) in the original image's pixels
    result.vertices                       # (V, 3) posed mesh, metres, model frame
    Image.fromarray(result.overlay())     # the mesh drawn over the photo

Detection, 68-point labels and the crop come from the data pipeline (dlib HOG + shape
predictor, crop = 1.6 × the landmark box, like the training data).

Every 2D output is in the input image's own pixels at any size: a path is decoded at full
resolution (within the decode budget of :mod:`facetwin.data.io`; the detector and the crop
shrink internally, with area averaging), so landmarks, camera and overlay of a 4000-px photo
are those of the 4000-px photo. Non-finite weights, landmarks or results are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facetwin.errors import FacetwinError

# The model layer reads and writes model files (facetwin.models); these names are the public API.
from facetwin.models.coarse import DEFAULT_MODEL_FILE as DEFAULT_CHECKPOINT  # noqa: E402
from facetwin.models.coarse import load_coarse_model  # noqa: E402,F401
from facetwin.models.coarse import resolve_model_file as resolve_checkpoint  # noqa: E402,F401

OVERLAY_RENDER_SIDE = 2048  # long side the overlay's mesh layer is rasterised at, at most


@dataclass
class Reconstruction:
    """Everything the coarse model says about one face. Pixel units; ``*_crop`` in the model's crop."""

    params: dict[str, np.ndarray]   # shape, expression, pose (5, 3), albedo, light (9, 3)
    vertices: np.ndarray            # (V, 3) posed mesh, model frame (metres)
    faces: np.ndarray               # (F, 3)
    landmarks3d: np.ndarray         # (68, 3) model frame
    landmarks2d: np.ndarray         # (68, 2) original image pixels
    landmarks2d_crop: np.ndarray    # (68, 2) crop pixels
    vertices2d: np.ndarray          # (V, 2) original image pixels
    scale: float                    # orthographic scale, original-image pixels per metre
    translation: np.ndarray         # (2,) original-image pixels: u = scale · (x, -y) + translation
    crop_transform: np.ndarray      # (2, 3) original pixels → crop pixels
    crop: np.ndarray                # (S, S, 3) uint8 crop the encoder saw
    image: np.ndarray               # (H, W, 3) uint8 original
    detection: dict = field(default_factory=dict)
    detail: "DetailResult | None" = None  # with a detail model: D, detail normals, displaced mesh
    # what the detail pass still needs when ``reconstruct(..., details=False)`` deferred it
    # (:meth:`FaceTwin.add_details`): the coarse parameters (tensors) and the crop at the detail size
    pending_detail: tuple | None = field(default=None, repr=False, compare=False)

    def camera(self) -> dict:
        return {"model": "orthographic", "scale": self.scale, "translation": self.translation.tolist(),
                "convention": "u = scale * (x, -y) + translation, pixels of the original image"}

    def render(self, size: int | None = None) -> np.ndarray:
        """Grey shaded mesh in the crop frame (S, S, 3) uint8 (``size`` overrides S)."""
        from facetwin.rendering.visualize import render_geometry

        S = size or self.crop.shape[0]
        f = S / self.crop.shape[0]
        A = self.crop_transform * f
        s_c = self.scale * float(np.sqrt(abs(np.linalg.det(A[:, :2]))))
        t_c = A[:, :2] @ self.translation + A[:, 2]
        img, _ = render_geometry(torch.as_tensor(self.vertices)[None].float(), torch.as_tensor(self.faces),
                                 torch.tensor([s_c]), torch.as_tensor(t_c)[None].float(), S)
        return _first(img)

    def overlay(self, opacity: float = 0.7, landmarks: bool = True) -> np.ndarray:
        """The shaded mesh over the original image (H, W, 3) uint8, with the 68 landmarks.

        Images above :data:`OVERLAY_RENDER_SIDE` are rendered at that size and the shaded layer
        is scaled up (the rasteriser's memory grows with the pixel count)."""
        import cv2

        from facetwin.rendering.visualize import draw_landmarks, render_geometry

        H, W = self.image.shape[:2]
        f = min(1.0, OVERLAY_RENDER_SIDE / max(H, W))
        h, w = max(1, round(H * f)), max(1, round(W * f))
        img, alpha = render_geometry(torch.as_tensor(self.vertices)[None].float(), torch.as_tensor(self.faces),
                                     torch.tensor([self.scale * f]), torch.as_tensor(self.translation * f)[None].float(), (h, w))
        img, alpha = _first(img), _first(alpha)
        a = alpha.astype(np.float32) / (255.0 if alpha.dtype == np.uint8 else 1.0)
        if f < 1.0:
            img = cv2.resize(np.ascontiguousarray(img), (W, H), interpolation=cv2.INTER_LINEAR)
            a = cv2.resize(np.ascontiguousarray(a.reshape(h, w)), (W, H), interpolation=cv2.INTER_LINEAR)
        a = a.reshape(H, W, 1) * opacity
        out = (self.image * (1 - a) + img * a).astype(np.uint8)
        if landmarks:
            r = max(1.0, 0.004 * max(H, W))
            out = _first(draw_landmarks(out, pred=self.landmarks2d, radius=r))
        return out

    def to_dict(self) -> dict:
        """JSON-friendly summary (parameters, camera, landmarks)."""
        return {
            "params": {k: v.tolist() for k, v in self.params.items()},
            "camera": self.camera(),
            "landmarks2d": self.landmarks2d.tolist(),
            "landmarks3d": self.landmarks3d.tolist(),
            "detection": self.detection,
        }

    def save_obj(self, path: str | Path) -> Path:
        from facetwin.outputs import write_text

        lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in self.vertices]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in self.faces]
        return write_text(path, "\n".join(lines) + "\n")


@dataclass
class DetailResult:
    """The details of one face (a detail model file was given). Maps are in the head model's
    symmetric detail UV layout (S × S, row 0 = v 1); see docs/detail.md."""

    displacement: np.ndarray        # (S, S) float32 D, metres along the coarse normal (0 off the face)
    normal_map: np.ndarray          # (S, S, 3) float32 unit detail normals, model frame (0 off the chart)
    displaced_vertices: np.ndarray  # (V, 3) the coarse mesh moved along its normals by D (metres)
    tension: np.ndarray             # (S, S) float32 T_UV of the expression
    texture: np.ndarray             # (S, S, 3) uint8 the photo unwrapped into the detail layout
    visibility: np.ndarray          # (S, S) uint8 255 where the photo saw the texel
    model: str = ""                 # the detail model file's format (e.g. facetwin-detail-mae/2)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"detail_displacement": self.displacement, "detail_normal_map": self.normal_map,
                "detail_displaced_vertices": self.displaced_vertices, "detail_tension": self.tension,
                "detail_texture": self.texture, "detail_visibility": self.visibility}


def detail_result(maps, i: int = 0, model: str = "") -> DetailResult:
    """A :class:`DetailResult` from item ``i`` of :class:`facetwin.models.detail.DetailMaps`."""
    f = lambda t: t[i].detach().float().cpu().numpy()  # noqa: E731
    return DetailResult(displacement=f(maps.displacement)[0], normal_map=np.transpose(f(maps.normals), (1, 2, 0)),
                        displaced_vertices=f(maps.displaced_vertices), tension=f(maps.tension)[0],
                        texture=(np.transpose(f(maps.texture), (1, 2, 0)).clip(0, 1) * 255 + 0.5).astype(np.uint8),
                        visibility=(f(maps.visibility)[0] > 0.5).astype(np.uint8) * 255, model=model)


def _first(x):
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if x.ndim == 4:
        x = x[0]
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.transpose(x, (1, 2, 0))
    return x


class FaceTwin:
    """Coarse 3D face reconstruction from one image (``model_file``: "default", a coarse-encoder
    ``.safetensors`` model file or a training run folder). ``person``: a person file from
    ``facetwin personalize`` (made for this model file): its adapters, and its β in every result.
    ``detail``: a detail model file (``facetwin train detail`` / ``detail-teacher``), ``"default"``
    (the shipped one if there is one, else none) or None: every image result then carries
    :class:`DetailResult` (D, detail normals, a displaced mesh). ``refine``: move the encoder's
    prediction onto the 68 points the crop is cut around (the annotator's, a track's or the caller's;
    :mod:`facetwin.models.refine`, ≈ 5 ms a face): True (default), False (the encoder alone) or a
    :class:`~facetwin.models.refine.RefineSettings`."""

    def __init__(self, model_file: str | Path | None = "default", head_model: str | None = None, device: str = "cpu",
                 person: str | Path | None = None, detail: str | Path | None = None, refine=True):
        from facetwin.models.refine import RefineSettings

        self.device = torch.device(device)
        self.refine = RefineSettings() if refine is True else (refine or None)
        self.model, self.meta = load_coarse_model(model_file, head_model, self.device)
        inference = self.meta["inference"]  # stored in the model file (facetwin.models.files)
        self.crop_size = int(inference["input_size"])
        self.crop_rule = dict(inference["crop"])
        self.person = None
        if person:
            from facetwin.models.person import load_person

            self.person = load_person(person, self.model.encoder, resolve_checkpoint(model_file))
        self.backend = "onnxruntime" if self.model.use_onnxruntime() else "torch"  # after the person's adapters
        self.detail = None
        self.detail_meta: dict = {}
        if detail == "default":
            from facetwin.models.detail import DEFAULT_MODEL_FILE as DETAIL_FILE

            detail = DETAIL_FILE if DETAIL_FILE.is_file() else None
        if detail:
            from facetwin.models.detail import load_detail_model

            self.detail, self.detail_meta = load_detail_model(detail, coarse=self.model, coarse_file=resolve_checkpoint(model_file),
                                                              device=self.device)
            if self.person is not None and self.person.has_details:  # the person's own detail adapters
                from facetwin.models.detail import resolve_detail_file
                from facetwin.models.person import attach_person_details

                attach_person_details(self.detail.network, self.person, resolve_detail_file(detail))
                self.detail_meta["person_details"] = True
            self.detail.use_onnxruntime(self.backend == "onnxruntime")  # after the person's detail adapters

    @torch.no_grad()
    def detail_crop(self, params, crop: np.ndarray) -> DetailResult:
        """Details of a square crop (C, C, 3) uint8 at the detail model's image size, with the coarse
        parameters of the same face (crop sizes, so any crop side works)."""
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float().div(255).to(self.device)
        geo = self.detail.coarse_geometry(x, params)
        return detail_result(self.detail.maps(x, geo), 0, self.detail_meta.get("format", ""))

    @torch.no_grad()
    def reconstruct_crop(self, crop: np.ndarray, target: np.ndarray | None = None) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
        """Run on an aligned square crop (S, S, 3) uint8 → (params, vertices, landmarks3d,
        landmarks2d_crop, scale_px, translation_px) in crop pixels. ``target`` (68, 2) crop pixels:
        the points to refine onto (when refinement is on); ``self.last_fit`` then holds the NME of
        the encoder's and the refined landmarks against them."""
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float().div(255).to(self.device)
        p = self.model.predict(x)
        self.last_fit = None
        if self.refine is not None and target is not None:
            from facetwin.models.refine import refine_to_landmarks

            p, fit = refine_to_landmarks(self.model.head_model, p, torch.as_tensor(target, dtype=torch.float64)[None].to(self.device),
                                         x.shape[-1], self.refine)
            self.last_fit = {"encoder": float(fit[0, 0]), "refined": float(fit[0, 1])}
        geo = self.model.geometry(p, x.shape[-1])
        self._last_params = p  # the detail pass reuses them
        params = {k: v[0].detach().cpu().numpy() for k, v in p.as_dict().items() if k not in ("scale", "translation")}
        return (params, geo.vertices[0].cpu().numpy(), geo.landmarks3d[0].cpu().numpy(), geo.landmarks2d[0].cpu().numpy(),
                float(geo.scale_px[0]), geo.translation_px[0].cpu().numpy())

    def reconstruct(self, image, landmarks: np.ndarray | None = None, face: int = 0, details: bool = True) -> Reconstruction:
        """``image``: path or (H, W, 3) uint8 RGB. ``landmarks`` (68, 2): skip detection and crop
        around these points instead (a tracked video frame). ``face``: which usable face, largest
        first (``detection["faces_found"]`` says how many there are). ``details=False`` leaves the
        detail pass for :meth:`add_details`. Raises FacetwinError when no usable face is found."""
        from facetwin.data.alignment import apply_affine, crop_square, crop_transform, invert_affine, warp

        from facetwin.data.io import check_shape, load_image

        if isinstance(image, (str, Path)):
            image, _ = load_image(image, max_side=None)  # full resolution: outputs in its pixels
        image = np.ascontiguousarray(np.asarray(image))
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise FacetwinError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        check_shape(image.shape[1], image.shape[0])
        if landmarks is not None:
            landmarks = np.asarray(landmarks, np.float64)
            if landmarks.shape != (68, 2) or not np.isfinite(landmarks).all():
                raise FacetwinError(f"landmarks must be 68 finite (x, y) points, got shape {landmarks.shape}"
                                    + ("" if landmarks.shape != (68, 2) else " with NaN/Inf values"))
        detection = {}
        if landmarks is None:
            from facetwin.data.annotator import annotate
            from facetwin.data.detection import detect_faces

            dets = detect_faces(image)
            labels, reason = annotate(image, faces="all", detections=dets)  # every face: say how many
            usable = [l for l in labels if l.ok]
            if not usable:
                raise FacetwinError(f"no usable face found ({reason or 'no face'})")
            if not 0 <= face < len(usable):
                raise FacetwinError(f"face {face} requested but {len(usable)} usable face(s) found")
            label = usable[face]
            landmarks = label.landmarks
            detection = {"box": label.box.tolist(), "reliability": float(label.reliability), "annotator_landmarks": landmarks.tolist(),
                         "face_index": face, "faces_found": len(usable), "faces_detected": len(dets)}
        centre, side = crop_square(np.asarray(landmarks, np.float64), **self.crop_rule)
        S = self.crop_size
        A = crop_transform(centre, side, S)
        crop = warp(image, A, S)
        params, verts, l3d, l2d_crop, s_c, t_c = self.reconstruct_crop(crop, apply_affine(A, landmarks))
        if self.last_fit is not None:  # NME against the points the crop was cut around
            detection["landmark_fit_nme"] = self.last_fit
        Ainv = invert_affine(A)
        zoom = side / S  # crop pixel → original pixels
        scale = s_c * zoom
        translation = apply_affine(Ainv, t_c[None])[0]
        l2d = apply_affine(Ainv, l2d_crop)
        from facetwin.geometry.camera import project_orthographic

        v2d = project_orthographic(torch.as_tensor(verts)[None], torch.tensor([scale]), torch.as_tensor(translation)[None])[0].numpy()
        if not (np.isfinite(verts).all() and np.isfinite(l2d).all() and np.isfinite(scale)):
            raise FacetwinError("the model produced NaN/Inf values for this image: no result written")
        pending = None
        if self.detail is not None:  # the same crop rule at the detail model's size: more texels
            Sd = self.detail.image_size
            pending = (self._last_params, warp(image, crop_transform(centre, side, Sd), Sd))
        res = Reconstruction(
            params=params, vertices=verts, faces=self.model.head_model.faces.cpu().numpy(), landmarks3d=l3d,
            landmarks2d=l2d, landmarks2d_crop=l2d_crop, vertices2d=v2d, scale=scale, translation=translation,
            crop_transform=A, crop=crop, image=image, detection=detection, pending_detail=pending,
        )
        return self.add_details(res) if details else res

    def add_details(self, res: Reconstruction) -> Reconstruction:
        """Run the detail pass that ``reconstruct(..., details=False)`` left out (nothing to do
        without a detail model). Separate so a video can compute frame t's details beside frame
        t+1's coarse pass (:func:`facetwin.inference.video.reconstruct_video`)."""
        if res.pending_detail is None:
            return res
        params, crop = res.pending_detail
        detail = self.detail_crop(params, crop)
        if not np.isfinite(detail.displacement).all():
            raise FacetwinError("the detail model produced NaN/Inf values for this image: no result written")
        res.detail, res.pending_detail = detail, None
        return res
