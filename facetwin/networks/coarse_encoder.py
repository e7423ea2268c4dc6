"""The coarse encoder E_c (paper section 3.2): ViT → class token → MLP (one hidden layer) →
head-model parameters β, ψ, θ, albedo α, orthographic camera (s, t) and 9×3 SH lighting.

Output mappings (so every prediction starts plausible and stays in range):

* β: linear (β ~ N(0, I) in the head model's convention).
* ψ: ``lo + (hi - lo) sigmoid(·)`` when the head model declares ``expression_range`` (e.g. the
  open model's non-negative blendshape weights); linear otherwise (FLAME's PCA space). Starts
  near ``lo``.
* θ: global rotation and jaw only (neck and eyes stay zero); each axis ``limit · tanh(·)``;
  jaw opening (x) ``limit · sigmoid(·)`` so it never opens backwards.
* camera: ``s = s_ref · exp(tanh(·))`` (positive, within e^±1 of the reference) and ``t`` such
  that zero outputs put the template's landmark centre at (0.5, ``centre_y``) of the crop.
  ``s_ref`` makes the template's 68 landmarks span ``face_fraction`` of the crop width. The
  defaults (0.625, 0.57) are the medians of the prepared crops (side 1.6 × landmark box,
  centred 0.12 box heights above it). Scale/translation are predicted
  relative to the crop size, :meth:`CoarseParams.camera_pixels` converts.
* α, SH lighting: linear; the lighting bias starts at ``light_init`` (ambient DC term: 3.5 ×
  DECA's constant 1/√(4π) ≈ irradiance 1).

The last linear layer starts with tiny weights so the first predictions are the mean face,
centred and frontal.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from facetwin.networks import onnx_runtime
from facetwin.networks.vit import VisionTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class CoarseParams:
    shape: torch.Tensor        # (B, n_shape) β
    expression: torch.Tensor   # (B, n_expr) ψ, already in the head model's range
    pose: torch.Tensor         # (B, 5, 3) axis-angle [global, neck, jaw, eye_left, eye_right]
    albedo: torch.Tensor       # (B, n_albedo)
    light: torch.Tensor        # (B, 9, 3) SH coefficients per colour channel
    scale: torch.Tensor        # (B,) orthographic scale, crop sizes per model unit (metre)
    translation: torch.Tensor  # (B, 2) translation, in crop sizes

    def camera_pixels(self, crop_size: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale (B,) pixels per metre, translation (B, 2) pixels) for a square crop."""
        return self.scale * crop_size, self.translation * crop_size

    def to(self, dtype: torch.dtype) -> "CoarseParams":
        return CoarseParams(**{f.name: getattr(self, f.name).to(dtype) for f in fields(self)})

    def detach(self) -> "CoarseParams":
        return CoarseParams(**{f.name: getattr(self, f.name).detach() for f in fields(self)})

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def index(self, idx) -> "CoarseParams":
        return CoarseParams(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


@dataclass
class HeadLayout:
    """Sizes and reference values the encoder needs from the head model."""

    n_shape: int
    n_expr: int
    n_albedo: int
    expression_range: tuple[float, float] | None
    landmark_centre: tuple[float, float]  # template landmark centre (x, y), model units
    landmark_width: float                 # template landmark extent along x, model units

    @classmethod
    def from_head_model(cls, head_model, n_albedo: int, n_shape: int | None = None, n_expr: int | None = None) -> "HeadLayout":
        """Reference values from a :class:`facetwin.headmodel.HeadModel` at β = ψ = θ = 0."""
        with torch.no_grad():
            lmk = head_model(batch_size=1).landmarks[0].float()
        lo, hi = lmk.min(0).values, lmk.max(0).values
        centre = (lo + hi) / 2
        return cls(
            n_shape=min(n_shape or head_model.n_shape, head_model.n_shape),
            n_expr=min(n_expr or head_model.n_expr, head_model.n_expr),
            n_albedo=n_albedo,
            expression_range=tuple(head_model.expression_range) if head_model.expression_range else None,
            landmark_centre=(float(centre[0]), float(centre[1])),
            landmark_width=float((hi - lo)[0]),
        )

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# The encoder's defaults, written once (CoarseModelConfig and the model file use these).
HIDDEN = 512            # width of the MLP head
FACE_FRACTION = 0.625   # template landmark width / crop width at zero camera output
CENTRE_Y = 0.57         # template landmark centre height / crop height at zero output (the crops' layout)
HEAD_INIT_STD = 1e-3    # std of the last layer's initial weights (small: start at the mean face)


class CoarseEncoder(nn.Module):
    """Image (B, 3, S, S) in [0, 1] → :class:`CoarseParams`."""

    GLOBAL_LIMITS = (1.2, 1.5, 0.9)  # pitch, yaw, roll (radians)
    JAW_LIMITS = (0.45, 0.08, 0.08)  # opening, sideways, twist

    def __init__(self, layout: HeadLayout, size: str = "tiny", image_size: int = 128, hidden: int = HIDDEN,
                 face_fraction: float = FACE_FRACTION, light_init: float = 3.5, predict_jaw: bool = True,
                 head_init_std: float = HEAD_INIT_STD, centre_y: float = CENTRE_Y):
        super().__init__()
        self.layout = layout
        self.size = size
        self.image_size = image_size
        self.predict_jaw = predict_jaw
        self.vit = VisionTransformer.from_size(size, image_size)
        self.n_out = layout.n_shape + layout.n_expr + 6 + layout.n_albedo + 3 + 27
        self.head = nn.Sequential(nn.Linear(self.vit.embed_dim, hidden), nn.GELU(), nn.Linear(hidden, self.n_out))
        last = self.head[-1]
        nn.init.normal_(last.weight, std=head_init_std)
        nn.init.zeros_(last.bias)
        with torch.no_grad():
            sl = self._slices()
            if layout.expression_range is not None:
                last.bias[sl["expression"]] = -4.0  # ψ starts near the range's low end (neutral)
            last.bias[sl["jaw"].start] = -2.0
            light_bias = last.bias[sl["light"]].view(9, 3)
            light_bias[0] = light_init
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.s_ref = face_fraction / max(layout.landmark_width, 1e-6)
        self.face_fraction = face_fraction
        self.centre_y = centre_y

    def _slices(self) -> dict[str, slice]:
        L = self.layout
        sizes = [("shape", L.n_shape), ("expression", L.n_expr), ("global", 3), ("jaw", 3),
                 ("albedo", L.n_albedo), ("camera", 3), ("light", 27)]
        out, start = {}, 0
        for name, n in sizes:
            out[name] = slice(start, start + n)
            start += n
        return out

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] → class token (B, dim)."""
        return self.vit((images - self.mean.to(images.dtype)) / self.std.to(images.dtype))

    def decode(self, raw: torch.Tensor) -> CoarseParams:
        """(B, n_out) raw head outputs → parameters (at least float32 whatever the autocast dtype)."""
        if raw.dtype in (torch.float16, torch.bfloat16):
            raw = raw.float()
        sl, L = self._slices(), self.layout
        B = raw.shape[0]
        expr = raw[:, sl["expression"]]
        if L.expression_range is not None:
            lo, hi = L.expression_range
            expr = lo + (hi - lo) * torch.sigmoid(expr)
        g_lim = raw.new_tensor(self.GLOBAL_LIMITS)
        j_lim = raw.new_tensor(self.JAW_LIMITS)
        glob = g_lim * torch.tanh(raw[:, sl["global"]])
        jaw_raw = raw[:, sl["jaw"]]
        jaw = torch.cat([j_lim[:1] * torch.sigmoid(jaw_raw[:, :1]), j_lim[1:] * torch.tanh(jaw_raw[:, 1:])], 1)
        if not self.predict_jaw:
            jaw = torch.zeros_like(jaw)
        zeros = raw.new_zeros(B, 3)
        pose = torch.stack([glob, zeros, jaw, zeros, zeros], 1)
        cam = raw[:, sl["camera"]]
        scale = self.s_ref * torch.exp(torch.tanh(cam[:, 0]))
        cx, cy = L.landmark_centre
        # u = s Π(v) + t with Π(x, y, z) = (x, -y): put the template's landmark centre where the
        # data pipeline's crops put the landmark centre (x 0.5, y ``centre_y``).
        centre_img = torch.stack([scale * cx, -scale * cy], -1)
        translation = raw.new_tensor([0.5, self.centre_y]) + 0.25 * cam[:, 1:] - centre_img
        return CoarseParams(
            shape=raw[:, sl["shape"]],
            expression=expr,
            pose=pose,
            albedo=raw[:, sl["albedo"]],
            light=raw[:, sl["light"]].reshape(B, 9, 3),
            scale=scale,
            translation=translation,
        )

    def forward(self, images: torch.Tensor) -> CoarseParams:
        return self.decode(self.raw(images))

    def raw(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, n_out) head outputs; through ``self.runtime`` (an onnxruntime session of
        this very network, :mod:`facetwin.networks.onnx_runtime`) when one is set and no gradient is
        wanted."""
        runtime = onnx_runtime.active(self)
        if runtime is not None:
            return runtime(images)
        return self.head(self.features(images))

    def transfer_parameters(self) -> list[nn.Parameter]:
        """What person-specific transfer trains: the adapters (after ``add_adapters(encoder)``)
        and every layer norm; the coarse encoder has no learnable latent."""
        from facetwin.networks.adapters import transfer_parameters

        return transfer_parameters(self)

    def config(self) -> dict:
        """What :func:`build_from_config` needs to rebuild this encoder (stored in its model file)."""
        return {"size": self.size, "image_size": self.image_size, "hidden": self.head[0].out_features,
                "face_fraction": self.face_fraction, "centre_y": self.centre_y, "predict_jaw": self.predict_jaw,
                "layout": self.layout.to_dict()}


def build_from_config(cfg: dict) -> CoarseEncoder:
    layout = dict(cfg["layout"])
    if layout.get("expression_range") is not None:
        layout["expression_range"] = tuple(layout["expression_range"])
    layout["landmark_centre"] = tuple(layout["landmark_centre"])
    return CoarseEncoder(HeadLayout(**layout), size=cfg["size"], image_size=cfg["image_size"],
                         hidden=cfg["hidden"], face_fraction=cfg["face_fraction"], predict_jaw=cfg.get("predict_jaw", True),
                         centre_y=cfg["centre_y"])
