"""Synthetic known-answer data for the detail stage: renders of the head model with a known
displacement map D.

The truth is placed by the tension (Eq. 3) of the expression, like real wrinkles: for a brow
raise, horizontal forehead lines

    D(u, v) = −depth · clamp(T_UV / t_full, 0, 1) · ½ (1 − cos(2π v / spacing))

(furrows into the skin, metres along the normal) wherever T_UV compresses the forehead skin,
nothing elsewhere. Each sample is rendered twice with the same camera, light and albedo, with
the detail normals of D and with those of D = 0, so a detail network's recovered D can be
compared with the truth (correlation, normal-angle error) and its render with the image.

    from facetwin.headmodel import load_head_model
    from facetwin.evaluation.synthetic_details import SyntheticDetails
    gen = SyntheticDetails(load_head_model("open"))
    s = gen.brow_raise(batch=4, seed=0)
    s.image, s.displacement, s.tension_map       # (4, 3, H, W), (4, 1, S, S), (4, 1, S, S)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from facetwin.geometry.camera import orthographic_screen_vertices
from facetwin.rendering.detail_maps import tension_map
from facetwin.rendering.rasterizer import interpolate_packed_t, scatter_pixels_channels_first
from facetwin.rendering.renderer import MeshRenderer, _sample_packed
from facetwin.rendering.shading import default_lighting
from facetwin.rendering.uv import UVMapper

BROW_RAISE = ("browInnerUp", "browOuterUpLeft", "browOuterUpRight")


@dataclass
class SyntheticDetailSample:
    image: torch.Tensor               # (B, 3, H, W) render with the true details, [0, 1]
    coarse_image: torch.Tensor        # (B, 3, H, W) same render with D = 0
    mask: torch.Tensor                # (B, 1, H, W) rendered pixels
    displacement: torch.Tensor        # (B, 1, S, S) the truth D, metres, detail UV layout
    displacement_image: torch.Tensor  # (B, 1, H, W) D at each pixel (0 off the detail chart)
    tension_map: torch.Tensor         # (B, 1, S, S) T_UV of the expression
    detail_normals: torch.Tensor      # (B, 3, S, S) normals of the displaced surface
    vertices: torch.Tensor            # (B, V, 3) posed coarse mesh, metres
    screen_vertices: torch.Tensor     # (B, V, 3) in the image (orthographic camera)
    expression: torch.Tensor          # (B, n_expr) ψ
    pose: torch.Tensor                # (B, 5, 3)
    lighting: torch.Tensor            # (B, 9, 3)


def tension_wrinkles(tension: torch.Tensor, uv_mask: torch.Tensor, depth: float = 0.0015, spacing: float = 0.04,
                     t_full: float = 0.3, phase: torch.Tensor | float = 0.0, region: torch.Tensor | None = None) -> torch.Tensor:
    """Horizontal lines where the skin is compressed (see the module docstring).

    Args:
        tension: (B, 1, S, S) T_UV; uv_mask: (1 or B, 1, S, S) texels of the layout.
        depth: furrow depth in metres (≤ 0.01); spacing: line spacing in UV units (0.04 ≈ 9 mm on
            the open model's detail layout); t_full: tension at which furrows reach full depth;
        phase: (B,) or float shift of the lines in UV units.
        region: optional (1 or B, 1, S, S) weights in [0, 1] where lines may form (e.g. the forehead).
    Returns:
        (B, 1, S, S) D ≤ 0.
    """
    B, _, S, _ = tension.shape
    v = 1 - (torch.arange(S, dtype=tension.dtype, device=tension.device) + 0.5) / S   # row → v
    ph = torch.as_tensor(phase, dtype=tension.dtype, device=tension.device).reshape(-1, 1, 1, 1)
    lines = 0.5 * (1 - torch.cos(2 * math.pi * (v.view(1, 1, S, 1) - ph) / spacing))
    strength = (tension / t_full).clamp(0, 1)
    weight = uv_mask.to(tension) if region is None else uv_mask.to(tension) * region.to(tension)
    return -depth * strength * lines * weight


class SyntheticDetails:
    """Known-answer renders of a head model that has a detail UV layout (the open model).

    Args:
        model: :class:`facetwin.headmodel.HeadModel`.
        image_size: H = W of the renders; map_size: S of the detail maps.
    """

    def __init__(self, model, image_size: int = 256, map_size: int = 256):
        data = model.data
        self.model = model
        self.image_size = image_size
        self.mapper = UVMapper.from_head_model(data, map_size, layout="detail")
        self.renderer = MeshRenderer.from_head_model(data, image_size, detail_uv=True)
        self._duv = (torch.as_tensor(data.detail_uv_coords), torch.as_tensor(data.detail_uv_faces))
        # The forehead: face skin from 8 mm above the highest eyelid point up, soft 5 mm edge.
        v = torch.as_tensor(data.v_template)
        brow_y = v[torch.as_tensor(data.masks["eyes"]), 1].max()
        w = ((v[:, 1] - brow_y - 0.008) / 0.005).clamp(0, 1)
        self.forehead = self.mapper.attribute_map(w[:, None].float())   # (1, 1, S, S)

    def render(self, expression: torch.Tensor, displacement_fn=tension_wrinkles, shape: torch.Tensor | None = None,
               pose: torch.Tensor | None = None, lighting: torch.Tensor | None = None, **wrinkle_kwargs) -> SyntheticDetailSample:
        """Render ψ (B, n_expr) with the details ``displacement_fn(T_UV, uv_mask, **kw)`` places."""
        B = expression.shape[0]
        m = self.model
        shape = torch.zeros(B, m.n_shape) if shape is None else shape
        pose = torch.zeros(B, 5, 3) if pose is None else pose
        out = m(shape=shape, expression=expression, pose=pose)
        rest = m(shape=shape, pose=pose).vertices   # S(β, θ_global, 0): tension ignores rigid motion
        T = tension_map(self.mapper, out.vertices, rest)
        D = displacement_fn(T, self.mapper.mask, **wrinkle_kwargs)
        v = out.vertices
        # Frontal orthographic camera framing the face (the model is ~0.27 m tall).
        scale = torch.full((B,), 0.95 * self.image_size / 0.24)
        centre = torch.tensor([0.0, 0.13])
        trans = torch.stack([self.image_size / 2 - scale * centre[0], self.image_size / 2 + scale * centre[1]], -1)
        sv = orthographic_screen_vertices(v, scale, trans)
        light = default_lighting(B, ambient=0.35, directional=(0.1, 0.55, 0.45)) if lighting is None else lighting
        frags = self.renderer.rasterize(sv)
        n_true = self.mapper.detail_normal_map(v, D)
        n_flat = self.mapper.detail_normal_map(v, torch.zeros_like(D))
        img = self.renderer.render(sv, v, None, light, detail_normals=n_true, fragments=frags)
        flat = self.renderer.render(sv, v, None, light, detail_normals=n_flat, fragments=frags)
        return SyntheticDetailSample(
            image=img.image.clamp(0, 1), coarse_image=flat.image.clamp(0, 1), mask=img.mask,
            displacement=D, displacement_image=self._pixel_map(D, frags), tension_map=T, detail_normals=n_true,
            vertices=v, screen_vertices=sv, expression=expression, pose=pose, lighting=light)

    def brow_raise(self, batch: int = 1, seed: int = 0, strength: tuple[float, float] = (0.6, 1.0),
                   yaw_deg: float = 15.0, **wrinkle_kwargs) -> SyntheticDetailSample:
        """Random brow raises (ψ of browInnerUp/browOuterUp* in ``strength``), random yaw within
        ±``yaw_deg`` and random line phase; lines on the forehead (:attr:`forehead`) where the
        tension compresses it."""
        g = torch.Generator().manual_seed(seed)
        names = self.model.data.expression_names
        psi = torch.zeros(batch, self.model.n_expr)
        s = strength[0] + (strength[1] - strength[0]) * torch.rand(batch, generator=g)
        for n in BROW_RAISE:
            psi[:, names.index(n)] = s
        pose = torch.zeros(batch, 5, 3)
        pose[:, 0, 1] = math.radians(yaw_deg) * (2 * torch.rand(batch, generator=g) - 1)
        phase = 0.04 * torch.rand(batch, generator=g)
        wrinkle_kwargs.setdefault("region", self.forehead)
        return self.render(psi, pose=pose, phase=phase, **wrinkle_kwargs)

    def _pixel_map(self, uv_map: torch.Tensor, frags) -> torch.Tensor:
        """(B, C, S, S) detail map → (B, C, H, W) at the rendered pixels (0 off the chart)."""
        coords, faces = self._duv
        duv = interpolate_packed_t(coords.to(uv_map.dtype), faces.clamp_min(0), frags)
        charted = (faces >= 0).all(1)[frags.face_index]
        vals = _sample_packed(uv_map, duv, frags.counts()) * charted[None].to(uv_map.dtype)
        return scatter_pixels_channels_first(vals.T, frags)


# -- known-answer scoring and the short fit --------------------------------------------------------

def score_displacement(pred: torch.Tensor, sample: SyntheticDetailSample, mapper: UVMapper, region: torch.Tensor) -> dict[str, float]:
    """How well a recovered D (B, 1, S, S) matches the truth of ``sample`` on the texels of
    ``region`` (1 or B, 1, S, S; e.g. the forehead): ``correlation`` (Pearson over all region
    texels of the batch), ``angle_deg`` (mean angle between the recovered and true detail
    normals there) and ``angle_coarse_deg`` (the same for D = 0: the error without details)."""
    m = (region.expand_as(pred) > 0.5) & (mapper.mask.expand_as(pred) > 0)
    a, b = pred[m].double(), sample.displacement[m].double()
    a, b = a - a.mean(), b - b.mean()
    corr = float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))
    truth = sample.detail_normals
    def angle(n):  # noqa: E306
        cos = (n * truth).sum(1, keepdim=True).clamp(-1, 1)
        return float(torch.rad2deg(torch.acos(cos))[m].mean())
    n_pred = mapper.detail_normal_map(sample.vertices, pred)
    n_flat = mapper.detail_normal_map(sample.vertices, torch.zeros_like(pred))
    return {"correlation": corr, "angle_deg": angle(n_pred), "angle_coarse_deg": angle(n_flat)}


def known_answer_fit(kind: str = "unet", steps: int = 150, train_batch: int = 8, test_batch: int = 4, size: int = 128,
                     seed: int = 0, lr: float = 3e-3, teacher=None, network=None, progress: bool = False,
                     spacing: float = 0.04, consistency: bool = True, strength: tuple[float, float] = (0.2, 1.0),
                     test_strength: tuple[float, float] | None = None) -> dict:
    """Fit a detail network by shape from shading (L_phoD + 0.02 L_smo through the detail normals
    and the renderer; the MAE also with L_Tchr against ``teacher`` when given) on ``train_batch``
    synthetic brow raises of the open head model with their true geometry, then score it on
    ``test_batch`` unseen ones (:func:`score_displacement` on the forehead).

    ``kind``: "unet" (D_UNet, width 16, 4 levels) or "mae" (patch 8, dim 128, depth 4); or a
    ``network`` to fit. The MAE is also fitted with Eq. 7's swap (``consistency``): details decoded
    from another sample's texture (the same neutral identity, another expression and yaw) with this
    sample's tension must render this sample, so D has to follow the tension. ``spacing``: line
    spacing in UV units; ``strength``: range of the brow raise of the training renders (0 = neutral,
    no lines), ``test_strength`` of the test renders (default the same).
    Returns ``{"network", "train": {...}, "test": {...}, "loss": [...], "gen", "test_sample"}``.
    """
    from tqdm import tqdm

    from facetwin.headmodel import load_head_model
    from facetwin.losses.detail import DetailLossInputs, DetailLossWeights, detail_losses
    from facetwin.networks.detail_mae import DetailMAE, DetailMAEConfig
    from facetwin.networks.unet import DetailUNet, UNetConfig

    gen = SyntheticDetails(load_head_model("open"), image_size=size, map_size=size)
    torch.manual_seed(seed)
    if network is None:
        network = DetailUNet(UNetConfig(width=16, levels=4)) if kind == "unet" else \
            DetailMAE(DetailMAEConfig(map_size=size, patch_size=8, embed_dim=128, depth=4, num_heads=4))
    is_mae = isinstance(network, DetailMAE)

    def prepare(s):
        with torch.no_grad():
            tex, vis = gen.mapper.unwrap(s.image, s.screen_vertices)
            frags = gen.renderer.rasterize(s.screen_vertices)
        return tex, vis, frags

    def run(net, s, tex, vis):
        return (net(tex, vis, s.tension_map) if is_mae else net(tex, vis)) * gen.mapper.mask

    with torch.no_grad():
        # faint to full brow raises; the test set is unseen (another seed)
        train = gen.brow_raise(batch=train_batch, seed=seed + 1000, strength=strength, spacing=spacing)
        test = gen.brow_raise(batch=test_batch, seed=seed + 2000, strength=test_strength or strength, spacing=spacing)
    tr_in, te_in = prepare(train), prepare(test)
    teacher_d = None
    if teacher is not None:
        with torch.no_grad():
            teacher_d = teacher(tr_in[0], tr_in[1]) * gen.mapper.mask
    w = DetailLossWeights(mrf=0.0, smoothness=0.02, displacement_reg=0.0, symmetry=0.0)
    opt = torch.optim.Adam(network.parameters(), lr=lr)
    history = []
    swap = torch.roll(torch.arange(train_batch), 1)
    rend = lambda D: gen.renderer.render(train.screen_vertices, train.vertices, None, train.lighting,  # noqa: E731
                                         detail_normals=gen.mapper.detail_normal_map(train.vertices, D), fragments=tr_in[2]).image
    for _ in tqdm(range(steps), desc=f"known-answer fit ({'mae' if is_mae else 'unet'})", disable=not progress):
        D = run(network, train, tr_in[0], tr_in[1])
        render = rend(D)
        sw_d = sw_render = None
        if is_mae and consistency:
            sw_d = network(tr_in[0][swap], tr_in[1][swap], train.tension_map) * gen.mapper.mask
            sw_render = rend(sw_d)
        terms = detail_losses(DetailLossInputs(displacement=D, uv_mask=gen.mapper.mask, image=train.image, render=render,
                                               skin_mask=train.mask, teacher=teacher_d, swapped_displacement=sw_d,
                                               swapped_render=sw_render), w)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        history.append(float(terms["photometric"].detach()))
    region = gen.forehead
    with torch.no_grad():
        out = {"train": score_displacement(run(network, train, *tr_in[:2]), train, gen.mapper, region),
               "test": score_displacement(run(network, test, *te_in[:2]), test, gen.mapper, region)}
    return {"network": network.eval(), "loss": history, "gen": gen, "test_sample": test, **out}
