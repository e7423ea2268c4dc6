"""The detail model (paper section 3.3): frozen coarse geometry → unwrapped texture and tension in
the detail UV layout → a detail network (the UNet teacher or the detail MAE) → displacement D →
detail normals, a detail render and a displaced mesh.

One implementation for training (``training/detail_stage.py`` schedules :meth:`DetailModel.loss_inputs`),
evaluation (:meth:`DetailModel.photometric_errors`) and inference / animation
(:meth:`DetailModel.forward`, :meth:`DetailModel.animate`). The model file of the detail network
is written and read here through :mod:`facetwin.models.files` (:func:`export_detail`,
:func:`load_detail_model`).

Frames and units: images are square crops (B, 3, C, C) in [0, 1] (any C: the coarse encoder
resizes to its own input); geometry is in metres (model frame); D is (B, 1, S, S) metres along
the coarse normal in the symmetric detail UV layout (``HeadModelData.detail_uv_*``), bounded by
±``max_displacement`` (DECA's 0.01 m). The tension T_UV (Eq. 3) compares the posed mesh
S(β, θ, ψ) with the rest mesh S(β, 0, 0) of the same person.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetwin.errors import FacetwinError
from facetwin.geometry.camera import orthographic_screen_vertices
from facetwin.losses.detail import DetailLossInputs
from facetwin.losses.photometric import photometric_loss, photometric_mask
from facetwin.models import files
from facetwin.networks.detail_mae import DetailMAE, DetailMAEConfig
from facetwin.networks.unet import DetailUNet, UNetConfig
from facetwin.paths import CHECKPOINTS_DIR
from facetwin.rendering.detail_maps import highpass_map, tension_map
from facetwin.rendering.uv import UVMapper

KINDS = {"unet": files.DETAIL_UNET, "mae": files.DETAIL_MAE}
MODEL_FILE_NAMES = {"unet": "detail_unet.safetensors", "mae": "detail_mae.safetensors"}
DEFAULT_MODEL_FILE = CHECKPOINTS_DIR / MODEL_FILE_NAMES["mae"]       # what inference uses
DEFAULT_TEACHER_FILE = CHECKPOINTS_DIR / MODEL_FILE_NAMES["unet"]    # its teacher: person transfer's L_Tchr


@dataclass
class DetailModelConfig:
    """The ``model:`` section of a detail config: which network, the map and image sizes."""

    network: str = "mae"          # "unet" (the teacher D_UNet) | "mae" (the detail MAE 𝒜)
    map_size: int = 128           # S of the detail UV maps (texture, visibility, T_UV, D)
    image_size: int = 224         # C of the crops unwrapped and rendered (the prepared crops' side)
    coarse_model: str = "default"  # the frozen coarse model file ('default' = shipped)
    highpass: float = 0.03        # σ (UV units, 0.03 ≈ 8 mm) of the blur whose part is taken out of D: wrinkles, not blobs; 0 = off
    init: str = ""                # a detail model file of the same network to start from ('' = fresh weights)
    unet: UNetConfig = field(default_factory=UNetConfig)
    mae: DetailMAEConfig = field(default_factory=DetailMAEConfig)

    def __post_init__(self):
        if self.network not in KINDS:
            raise FacetwinError(f"model.network must be 'unet' or 'mae', not {self.network!r}")
        if self.map_size < 16 or self.image_size < 16:
            raise FacetwinError("model.map_size and model.image_size must be at least 16")
        if self.map_size % 2 ** (self.unet.levels - 1):
            raise FacetwinError(f"model.map_size {self.map_size} must be divisible by 2**(unet.levels-1)")
        if not 0 <= self.highpass < 0.5:
            raise FacetwinError(f"model.highpass must be in [0, 0.5) (UV units), not {self.highpass}")
        if self.map_size % self.mae.patch_size:
            raise FacetwinError(f"model.map_size {self.map_size} must be a multiple of mae.patch_size {self.mae.patch_size}")


def build_network(kind: str, config: dict | UNetConfig | DetailMAEConfig, map_size: int | None = None) -> nn.Module:
    """A fresh detail network of ``kind`` ("unet" | "mae") from its config (dataclass or dict)."""
    if kind == "unet":
        cfg = config if isinstance(config, UNetConfig) else UNetConfig(**config)
        return DetailUNet(cfg)
    if kind == "mae":
        cfg = config if isinstance(config, DetailMAEConfig) else DetailMAEConfig(**config)
        if map_size is not None and cfg.map_size != map_size:
            cfg = dataclasses.replace(cfg, map_size=map_size)
        return DetailMAE(cfg)
    raise FacetwinError(f"unknown detail network {kind!r} (unet or mae)")


def network_kind(network: nn.Module) -> str:
    return "mae" if isinstance(network, DetailMAE) else "unet"


@dataclass
class DetailMaps:
    """What the detail model computes for a batch (UV maps (B, ·, S, S), detail layout)."""

    texture: torch.Tensor         # (B, 3, S, S) the image unwrapped, 0 where unseen
    visibility: torch.Tensor      # (B, 1, S, S) in {0, 1}
    tension: torch.Tensor         # (B, 1, S, S) T_UV in (−1, 1)
    displacement: torch.Tensor    # (B, 1, S, S) D, metres along the normal
    normals: torch.Tensor         # (B, 3, S, S) detail normals (unit, model frame; 0 off the chart)
    vertices: torch.Tensor        # (B, V, 3) coarse posed mesh, metres
    rest_vertices: torch.Tensor   # (B, V, 3) S(β, 0, 0)
    displaced_vertices: torch.Tensor  # (B, V, 3) the coarse mesh moved along its normals by D


class DetailModel(nn.Module):
    """Frozen :class:`~facetwin.models.coarse.CoarseModel` + a detail network (``network``, the
    only trainable module) + the fixed detail UV mapper and renderer.

    Args:
        coarse: the coarse model (its encoder and head model are frozen here).
        network: :class:`DetailUNet` or :class:`DetailMAE`.
        map_size: S; image_size: C, the crop side images are unwrapped from and rendered at.
        albedo_model: the albedo model of the coarse model's albedo coefficients (renders
            with colour; None renders grey: the geometry-only pictures).
        highpass: σ in UV units of the blur whose part is taken out of every D the networks make
            (:func:`~facetwin.rendering.detail_maps.highpass_map`; 0 = none): without it a teacher
            trained by shading alone used D for centimetre-wide blobs that correct the coarse
            shape and albedo — deep "wrinkles" on children's faces (docs/detail.md).
    """

    def __init__(self, coarse, network: nn.Module, map_size: int = 128, image_size: int = 224, albedo_model=None,
                 highpass: float = 0.0):
        super().__init__()
        self.highpass = float(highpass)
        from facetwin.rendering import MeshRenderer

        self.coarse = coarse
        for p in self.coarse.parameters():
            p.requires_grad_(False)
        self.coarse.eval()
        self.network = network
        self.kind = network_kind(network)
        self.map_size, self.image_size = map_size, image_size
        self.albedo_model = albedo_model
        if albedo_model is not None:
            for p in albedo_model.parameters():
                p.requires_grad_(False)
        data = coarse.head_model.data
        self.mapper = UVMapper.from_head_model(data, map_size, layout="detail")
        uv, uvf = (data.uv_coords, data.uv_faces) if data.uv_coords is not None else (np.zeros((1, 2), np.float32), np.zeros_like(data.faces))
        self.renderer = MeshRenderer(data.faces, uv, uvf, image_size, detail_uv=(data.detail_uv_coords, data.detail_uv_faces))
        region = data.detail_face_region if data.detail_face_region is not None else (data.detail_uv_faces >= 0).all(1)
        region_t = torch.as_tensor(region, dtype=torch.float32)
        # face-skin texels: the chart triangles of the face region (seam margin excluded)
        self.register_buffer("uv_mask", self.mapper.scatter_t(region_t[self.mapper.fragments.face_index][None, None]), persistent=False)
        self.register_buffer("_charted", torch.as_tensor((data.detail_uv_faces >= 0).all(1) & region), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.coarse.eval()  # frozen: never in training mode
        return self

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        dev = self.uv_mask.device
        self.mapper.to(dev)
        self.renderer.to(dev)
        return out

    def use_onnxruntime(self, on: bool = True) -> bool:
        """Run the detail network through onnxruntime at inference (as
        :meth:`CoarseModel.use_onnxruntime` does the encoder; 1.1–1.4× faster at batch 1 on CPU);
        again after its weights change (a person's detail adapters). Returns whether it is on."""
        from facetwin.networks import onnx_runtime

        S = self.map_size
        maps = (torch.zeros(1, 3, S, S), torch.zeros(1, 1, S, S), torch.zeros(1, 1, S, S))
        return onnx_runtime.attach(self.network, maps[:2] if self.kind == "unet" else maps, f"detail-{self.kind}", on=on)

    # -- coarse geometry ------------------------------------------------------------------------
    @torch.no_grad()
    def coarse_geometry(self, images: torch.Tensor, params=None):
        """The frozen coarse geometry of (B, 3, C, C) crops (``params``: encoder output to reuse)."""
        if params is None:
            params = self.coarse.predict(images.float())  # the encoder and, if it has one, the identity head
        return self.coarse.geometry(params.detach().to(torch.float32), images.shape[-1])

    def rest_vertices(self, shape: torch.Tensor) -> torch.Tensor:
        """S(β, 0, 0): (B, n) β → (B, V, 3) metres (the tension's reference): the unposed shape, which
        skinning at the zero pose leaves as it is (so it is not run)."""
        hm = self.coarse.head_model
        beta = _pad(shape.float(), hm.n_shape)
        return hm.rest_shape(beta, beta.new_zeros(beta.shape[0], hm.n_expr))[0]

    def screen(self, geo, size: int | None = None) -> torch.Tensor:
        """(B, V, 3) screen vertices of the geometry in a ``size``² image (default the crop)."""
        f = (size or geo.crop_size) / geo.crop_size
        return orthographic_screen_vertices(geo.vertices, geo.scale_px * f, geo.translation_px * f)

    # -- the detail pass ------------------------------------------------------------------------
    def unwrap(self, images: torch.Tensor, screen: torch.Tensor, fragments=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(texture (B, 3, S, S), visibility (B, 1, S, S)) of crops through their screen vertices."""
        with torch.no_grad():
            return self.mapper.unwrap(images.float(), screen, image_fragments=fragments)

    def tension(self, vertices: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        """T_UV (B, 1, S, S) of a posed mesh against its rest mesh (both (B, V, 3))."""
        with torch.no_grad():
            return tension_map(self.mapper, vertices, rest, edge_index=self.coarse.edges)

    def displacement(self, texture: torch.Tensor, visibility: torch.Tensor, tension: torch.Tensor,
                     network: nn.Module | None = None) -> torch.Tensor:
        """D (B, 1, S, S) metres from the network (``network``: e.g. its DDP wrapper); the UNet
        ignores the tension. Zero outside the chart."""
        net = network if network is not None else self.network
        d = net(texture, visibility) if self.kind == "unet" else net(texture, visibility, tension)
        return self.fine(d)

    def fine(self, d: torch.Tensor) -> torch.Tensor:
        """A network's raw (B, 1, S, S) D → what this model uses: its fine part (``highpass``), 0 off the chart."""
        return highpass_map(d, self.mapper.mask.to(d), self.highpass)

    def detail_normals(self, vertices: torch.Tensor, displacement: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        return self.mapper.detail_normal_map(vertices, displacement, normals)

    def maps(self, images: torch.Tensor, geo=None, network: nn.Module | None = None, fragments=None) -> DetailMaps:
        """Every detail map of (B, 3, C, C) crops (their coarse geometry ``geo`` reused when given)."""
        geo = geo if geo is not None else self.coarse_geometry(images)
        screen = self.screen(geo)
        tex, vis = self.unwrap(images, screen, fragments)
        rest = self.rest_vertices(geo.params.shape)
        T = self.tension(geo.vertices, rest)
        D = self.displacement(tex, vis, T, network)
        return self._finish(geo.vertices, geo.normals, rest, tex, vis, T, D)

    def _finish(self, vertices, normals, rest, tex, vis, T, D) -> DetailMaps:
        n = self.detail_normals(vertices, D, normals)
        disp_v = self.mapper.displace_vertices(vertices, D, normals)
        return DetailMaps(tex, vis, T, D, n, vertices, rest, disp_v)

    def forward(self, images: torch.Tensor, params=None) -> tuple[object, DetailMaps]:
        """(coarse geometry in the crop's pixels, :class:`DetailMaps`) of (B, 3, C, C) crops in [0, 1]."""
        geo = self.coarse_geometry(images, params)
        return geo, self.maps(images, geo)

    def animate(self, texture: torch.Tensor, visibility: torch.Tensor, shape: torch.Tensor, expression: torch.Tensor,
                pose: torch.Tensor) -> DetailMaps:
        """Details of a person (unwrapped ``texture``/``visibility`` of one of her images, β
        ``shape``) under a new expression ψ (B, n_expr) and pose θ (B, 5, 3): the tension and
        so D are recomputed (the MAE; a UNet teacher's D does not depend on the expression)."""
        hm = self.coarse.head_model
        beta = _pad(shape.float(), hm.n_shape)
        B = expression.shape[0]
        if beta.shape[0] != B:
            beta = beta.expand(B, -1)
        out = hm(beta, _pad(expression.float(), hm.n_expr), pose.float())
        from facetwin.geometry.mesh import vertex_normals

        normals = vertex_normals(out.vertices, hm.faces)
        rest = self.rest_vertices(beta)
        T = self.tension(out.vertices, rest)
        tex, vis = texture.expand(B, -1, -1, -1), visibility.expand(B, -1, -1, -1)
        D = self.displacement(tex, vis, T)
        return self._finish(out.vertices, normals, rest, tex, vis, T, D)

    # -- rendering -------------------------------------------------------------------------------
    def render(self, geo, normals_uv: torch.Tensor | None, size: int | None = None, albedo: bool = True, fragments=None):
        """(render (B, 3, R, R), mask (B, 1, R, R), fragments) of the coarse geometry with the
        UV normal map ``normals_uv`` (None: the coarse mesh normals), with the coarse albedo
        and light (``albedo=False``: grey, the geometry shows)."""
        R = size or self.image_size
        self.renderer.image_size = (R, R)  # one topology, any square size (the rasteriser reads it per call)
        screen = self.screen(geo, R)
        tex = None
        if albedo and self.albedo_model is not None:
            with torch.no_grad():
                tex = self.albedo_model(geo.params.albedo.float())
        light = geo.params.light.float()
        if not albedo:
            from facetwin.rendering.shading import default_lighting

            light = default_lighting(geo.vertices.shape[0], ambient=0.35, directional=(0.1, 0.55, 0.45)).to(light)
        if fragments is None:
            fragments = self.renderer.rasterize(screen)
        out = self.renderer.render(screen, geo.vertices, tex, light, detail_normals=normals_uv, fragments=fragments)
        return out.image.clamp(0, 1), out.mask, fragments

    @torch.no_grad()
    def shaded(self, vertices: torch.Tensor, normals_uv: torch.Tensor | None, scale_px: torch.Tensor,
               translation_px: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Grey shading of a mesh (B, V, 3) with UV detail normals (B, 3, S, S) (None: the mesh's
        own) under a fixed studio light, seen by an orthographic camera (pixels per metre (B,),
        translation (B, 2) pixels) in a ``size``² image: (image (B, 3, R, R), mask (B, 1, R, R))."""
        from facetwin.rendering.shading import default_lighting

        self.renderer.image_size = (size, size)
        screen = orthographic_screen_vertices(vertices, scale_px, translation_px)
        light = default_lighting(vertices.shape[0], ambient=0.35, directional=(0.1, 0.55, 0.45)).to(vertices)
        out = self.renderer.render(screen, vertices, None, light, detail_normals=normals_uv)
        return out.image.clamp(0, 1), out.mask

    def chart_pixels(self, fragments) -> torch.Tensor:
        """(B, 1, H, W) pixels of a rasterisation that lie on the face-skin chart (where D acts)."""
        from facetwin.rendering.rasterizer import scatter_pixels_channels_first

        on = self._charted.index_select(0, fragments.face_index).to(torch.float32)
        return scatter_pixels_channels_first(on[:, None], fragments)

    def photometric_mask(self, render_mask, fragments, skin=None, occluder=None) -> torch.Tensor:
        """rendered ∧ face-skin chart ∧ skin (the prepared skin mask, when given) ∧ ¬occluder
        (what augmentation pasted over the face)."""
        return photometric_mask(render_mask, skin, occluder) * self.chart_pixels(fragments)

    # -- training --------------------------------------------------------------------------------
    def loss_inputs(self, batch: dict, network: nn.Module | None = None, teacher: nn.Module | None = None,
                    consistency: bool = False, render: bool = True) -> tuple[DetailLossInputs, object, DetailMaps]:
        """Everything :func:`facetwin.losses.detail.detail_losses` reads for one batch, the coarse
        geometry and the maps. Batch keys: ``image`` (B, 3, C, C) [0, 1], optional ``skin``, ``occluder``
        (B, 1, C, C), ``identity`` (B,) (L_dc partners: another frame of the same clip).

        ``teacher``: the frozen D_UNet (MAE training: L_Tchr, L_sym, L_dc); ``consistency``:
        compute Eq. 7's swapped pass, 𝒜(texture of I', T_UV of I), rendered with I's geometry.
        ``render=False``: no renders (``render``, ``skin_mask``, ``swapped_render`` None), for losses
        without the photometric terms — a distillation phase, ~3.5× cheaper a step.
        """
        images = batch["image"].float()
        geo = self.coarse_geometry(images)
        render_out = mask = frags = None
        if render:
            self.renderer.image_size = tuple(images.shape[-2:])
            frags = self.renderer.rasterize(self.screen(geo))  # one rasterisation: unwrap, render, swapped render
        maps = self.maps(images, geo, network, fragments=frags)
        if render:
            render_out, rmask, frags = self.render(geo, maps.normals, images.shape[-1], fragments=frags)
            skin, occ = batch.get("skin"), batch.get("occluder")
            mask = self.photometric_mask(rmask, frags, None if skin is None else skin.float(), None if occ is None else occ.float())
        t_out = None
        if teacher is not None:
            with torch.no_grad():
                t_out = self.fine(teacher(maps.texture, maps.visibility))
        sw_d = sw_render = None
        if consistency and teacher is not None and "identity" in batch:
            from facetwin.losses.consistency import identity_swap_permutation

            p = identity_swap_permutation(batch["identity"])
            if not torch.equal(p, torch.arange(len(p), device=p.device)):
                sw_d = self.displacement(maps.texture[p], maps.visibility[p], maps.tension, network)
                if render:
                    sw_n = self.detail_normals(geo.vertices, sw_d, geo.normals)
                    sw_render, _, _ = self.render(geo, sw_n, images.shape[-1], fragments=frags)
        inputs = DetailLossInputs(displacement=maps.displacement, uv_mask=self.uv_mask, image=images, render=render_out,
                                  skin_mask=mask, visibility=maps.visibility, teacher=t_out,
                                  swapped_displacement=sw_d, swapped_render=sw_render)
        return inputs, geo, maps

    @torch.no_grad()
    def photometric_errors(self, images: torch.Tensor, skin: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-image L1 photometric error (B,) of the coarse render (flat D = 0 normals through
        the same UV path) and of the render with details, on rendered ∧ chart ∧ skin pixels."""
        geo, maps = self.forward(images)
        flat = self.detail_normals(geo.vertices, torch.zeros_like(maps.displacement), geo.normals)
        coarse, rmask, frags = self.render(geo, flat, images.shape[-1])
        detail, _, _ = self.render(geo, maps.normals, images.shape[-1], fragments=frags)
        mask = self.photometric_mask(rmask, frags, skin)
        per = lambda r: torch.stack([photometric_loss(r[i:i + 1], images[i:i + 1], mask[i:i + 1]) for i in range(len(r))])  # noqa: E731
        return {"coarse": per(coarse), "detail": per(detail), "mask_pixels": mask.sum((1, 2, 3))}

    # -- pictures --------------------------------------------------------------------------------
    @torch.no_grad()
    def picture(self, images: torch.Tensor, max_rows: int = 6, network: nn.Module | None = None) -> np.ndarray:
        """One row per image: input · coarse render · detail render · detail shading (grey) ·
        D (blue = into the skin, red = out, ±2 mm full scale) · T_UV (red = compression);
        (H, W, 3) uint8."""
        from facetwin.rendering.visualize import to_uint8

        images = images[:max_rows].float()
        geo = self.coarse_geometry(images)
        maps = self.maps(images, geo, network)
        C = images.shape[-1]
        flat = self.detail_normals(geo.vertices, torch.zeros_like(maps.displacement), geo.normals)
        coarse, _, frags = self.render(geo, flat, C)
        detail, _, _ = self.render(geo, maps.normals, C, fragments=frags)
        grey, gmask, _ = self.render(geo, maps.normals, C, albedo=False, fragments=frags)
        grey = grey * gmask + (1 - gmask) * images * 0.3
        up = lambda m: F.interpolate(m, size=(C, C), mode="nearest")  # noqa: E731
        mask = up(self.mapper.mask.expand(len(images), -1, -1, -1))
        d_img = diverging(up(maps.displacement) / 0.002, mask)
        t_img = diverging(up(maps.tension) / 0.5, mask)
        rows = []
        for i in range(len(images)):
            rows.append(np.concatenate([to_uint8(x[i]) for x in (images, coarse, detail, grey, d_img, t_img)], 1))
        return np.concatenate(rows, 0)


def diverging(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) values in about [−1, 1] → (B, 3, H, W) blue (−) · white (0) · red (+), grey off ``mask``."""
    x = x.clamp(-1, 1)
    pos, neg = x.clamp_min(0), (-x).clamp_min(0)
    rgb = torch.cat([1 - neg, 1 - pos - neg, 1 - pos], 1)
    return rgb * mask + 0.5 * (1 - mask)


# -- the model file ---------------------------------------------------------------------------

file_sha256 = files.file_sha256  # the coarse model a detail model was trained on

def export_detail(model: DetailModel, path: str | Path, coarse_file: str | Path, step: int = 0,
                  config: dict | None = None, command: str = "") -> Path:
    """Write the detail network's model file (``facetwin-detail-unet/1`` or ``-mae/1``): fp16
    safetensors with its network description, head model, map / image sizes, the coarse model
    it was trained on (file name + SHA-256) and the command that reproduces it."""
    net = model.network
    kind = model.kind
    coarse_path = Path(coarse_file)
    meta = {"network": {"kind": kind, "config": dataclasses.asdict(net.config)},
            "head_model": model.coarse.head_model.name,
            "inference": {"map_size": model.map_size, "image_size": model.image_size, "layout": "detail", "highpass": model.highpass,
                          "max_displacement": float(net.config.max_displacement), "units": "metres along the coarse normal"},
            "coarse_model": {"file": coarse_path.name, "sha256": file_sha256(coarse_path) if coarse_path.is_file() else ""},
            "step": step, "train_config": config or {}, "command": command}
    return files.write_model_file(path, net.state_dict(), KINDS[kind], meta)


def resolve_detail_file(model_file: str | Path | None, kind: str | None = None) -> Path:
    """``"default"`` (the shipped detail MAE; with ``kind="unet"`` its shipped UNet teacher), a
    ``.safetensors`` file or a run folder (its ``export/detail_*.safetensors``)."""
    if model_file in (None, "", "default"):
        shipped = DEFAULT_TEACHER_FILE if kind == "unet" else DEFAULT_MODEL_FILE
        if not shipped.is_file():
            flag = "--teacher UNET_FILE" if kind == "unet" else "--detail MODEL_FILE"
            raise FacetwinError(f"no shipped detail {'teacher' if kind == 'unet' else 'model'} ({shipped.name} is missing); pass {flag}")
        return shipped
    path = Path(model_file)
    if path.is_dir():
        for name in (MODEL_FILE_NAMES["mae"], MODEL_FILE_NAMES["unet"]):
            for cand in (path / "export" / name, path / name):
                if cand.is_file():
                    return cand
        raise FacetwinError(f"no detail model file in {path}")
    if not path.is_file():
        raise FacetwinError(f"detail model file not found: {path}")
    return path


def read_detail_network(model_file: str | Path, kind: str | None = None) -> tuple[nn.Module, dict]:
    """(network with its weights, metadata) of a detail model file; ``kind`` ("unet" | "mae")
    restricts what is accepted. Another kind, NaN weights or a broken file: one-line FacetwinError."""
    path = resolve_detail_file(model_file, kind)
    meta = files.upgrade(files.read_metadata(path))
    found, _ = files.parse_format(meta.get("format", ""))
    wanted = [KINDS[kind]] if kind else list(KINDS.values())
    if found not in wanted:
        raise FacetwinError(f"{path.name} is not a facetwin detail model file (format {meta.get('format')!r}; "
                            f"expected {' or '.join(files.format_name(k) for k in wanted)})")
    state, meta = files.read_model_file(path, found)
    net_meta = meta.get("network") or {}
    try:
        net = build_network(net_meta["kind"], net_meta["config"])
        net.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise FacetwinError(f"{path.name} does not match its own network description: {str(exc).splitlines()[0]}") from None
    return net.eval(), meta


def load_detail_model(model_file: str | Path | None = "default", coarse=None, coarse_file: str | Path | None = "default",
                      device: str | torch.device = "cpu", albedo: bool = True) -> tuple[DetailModel, dict]:
    """(DetailModel in eval mode, metadata) from a detail model file, on ``coarse`` (a loaded
    CoarseModel) or the coarse model file ``coarse_file``. ``meta["coarse_matches"]`` says
    whether that coarse model is the one the details were trained on (by SHA-256)."""
    from facetwin.models.coarse import load_albedo, load_coarse_model, resolve_model_file

    net, meta = read_detail_network(model_file)
    cpath = resolve_model_file(coarse_file)
    if coarse is None:
        coarse, _ = load_coarse_model(cpath, device=device)
    want = (meta.get("coarse_model") or {}).get("sha256", "")
    meta["coarse_matches"] = bool(want) and want == file_sha256(cpath)
    if coarse.head_model.name != meta.get("head_model", coarse.head_model.name):
        raise FacetwinError(f"the detail model was trained for head model '{meta['head_model']}', not '{coarse.head_model.name}'")
    inf = meta.get("inference") or {}
    model = DetailModel(coarse, net, int(inf.get("map_size", 128)), int(inf.get("image_size", 224)),
                        albedo_model=load_albedo("open") if albedo else None, highpass=float(inf.get("highpass", 0.0)))
    return model.to(device).eval(), meta


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    if x.shape[1] >= n:
        return x[:, :n]
    return torch.cat([x, x.new_zeros(x.shape[0], n - x.shape[1])], 1)
