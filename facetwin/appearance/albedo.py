"""An open linear albedo model in the head model's UV space (replaces the paper's licensed
Basel-Face-Model albedo).

``texture(α) = clamp(mean + Σ_k α_k σ_k b_k, 0, 1)`` with orthonormal components ``b_k`` and
their standard deviations ``σ_k``, so that α ~ N(0, I) is the prior (the albedo regulariser is
a plain |α|²). The model is stored at a low UV resolution (e.g. 64²; albedo is smooth and the
shading carries the detail) and bilinearly upsampled to ``output_size`` (256² by default) at run
time. Layout: channels-first (B, 3, S, S), row 0 = v 1 (see :mod:`facetwin.rendering.texture`).

How the shipped model is built from real faces is documented in ``docs/albedo.md`` and
``scripts/build_albedo_model.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetwin.errors import FacetwinError
from facetwin.npzio import read_npz

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
ALBEDO_FILE = ASSETS_DIR / "open_albedo_model.npz"


class AlbedoModel(nn.Module):
    """Linear albedo model: ``forward(alpha (B, K)) -> texture (B, 3, S, S)`` in [0, 1].

    Args:
        mean: (3, R, R) mean albedo texture.
        components: (K, 3, R, R) orthonormal principal directions (as flattened vectors).
        std: (K,) standard deviation along each direction (α_k = 1 is one σ).
        output_size: S, the side of the returned texture (bilinear upsampling from R).
        meta: free-form strings (source, build command, head model) kept with the file.
    """

    def __init__(self, mean, components, std, output_size: int = 256, meta: dict | None = None):
        super().__init__()
        mean, components, std = (_float_tensor(a) for a in (mean, components, std))
        if mean.ndim != 3 or mean.shape[0] != 3 or components.shape[1:] != mean.shape or std.shape != components.shape[:1]:
            raise FacetwinError(
                f"inconsistent albedo model arrays: mean {tuple(mean.shape)}, components {tuple(components.shape)}, std {tuple(std.shape)}"
            )
        self.resolution = int(mean.shape[-1])
        self.output_size = int(output_size)
        self.meta = dict(meta or {})
        self.register_buffer("mean", mean)
        self.register_buffer("components", components)
        self.register_buffer("std", std)
        # σ-scaled basis flattened to (K, 3 R²) so the blend is one matmul.
        self.register_buffer("scaled_basis", (components * std[:, None, None, None]).reshape(len(std), -1), persistent=False)

    @property
    def n_coefficients(self) -> int:
        return int(self.std.shape[0])

    def forward(self, alpha: torch.Tensor) -> torch.Tensor:
        """(B, K') with K' ≤ K (the leading components) → (B, 3, S, S) albedo in [0, 1]."""
        k = alpha.shape[-1]
        if k > self.n_coefficients:
            raise ValueError(f"the albedo model has {self.n_coefficients} components, got {k} coefficients")
        dtype = alpha.dtype
        flat = alpha @ self.scaled_basis[:k].to(dtype)
        tex = self.mean.to(dtype) + flat.reshape(alpha.shape[0], 3, self.resolution, self.resolution)
        if self.output_size != self.resolution:
            tex = F.interpolate(tex, size=(self.output_size, self.output_size), mode="bilinear", align_corners=False)
        return tex.clamp(0, 1)

    def mean_texture(self, batch: int = 1) -> torch.Tensor:
        """(B, 3, S, S) the mean albedo."""
        return self(self.std.new_zeros(batch, self.n_coefficients))

    def project(self, texture: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Least-squares coefficients α (B, K) of textures (B, 3, R, R) at the model resolution,
        optionally with per-texel weights (B, 1, R, R) (e.g. visibility)."""
        B = texture.shape[0]
        x = (texture - self.mean).reshape(B, -1)
        Bm = self.scaled_basis.to(texture.dtype)  # (K, D)
        if weight is None:
            return x @ Bm.T @ torch.linalg.inv(Bm @ Bm.T)
        w = weight.expand(B, 3, -1, -1).reshape(B, -1)
        BtWB = torch.einsum("kd,bd,ld->bkl", Bm, w, Bm)
        ridge = 1e-9 * BtWB.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None]  # relative: keeps unseen directions finite
        BtWB = BtWB + ridge * torch.eye(len(Bm), dtype=x.dtype, device=x.device)
        rhs = torch.einsum("kd,bd->bk", Bm, w * x)
        return torch.linalg.solve(BtWB, rhs)

    def truncated(self, k: int) -> "AlbedoModel":
        """A model with only the first k components."""
        return AlbedoModel(self.mean, self.components[:k], self.std[:k], self.output_size, self.meta)

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | Path, float_dtype=np.float16) -> None:
        """Compressed .npz (mean and components as float16 by default: small and exact enough)."""
        arrays = {
            "mean": self.mean.cpu().numpy().astype(float_dtype),
            "components": self.components.cpu().numpy().astype(float_dtype),
            "std": self.std.cpu().numpy().astype(np.float32),
        }
        for k, v in self.meta.items():
            arrays[f"meta_{k}"] = np.array(str(v))
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str | Path, n_components: int | None = None, output_size: int = 256) -> "AlbedoModel":
        raw = read_npz(path, "albedo model")
        missing = [k for k in ("mean", "components", "std") if k not in raw]
        if missing:
            raise FacetwinError(f"{path} is not an albedo model (missing {', '.join(missing)})")
        meta = {k[5:]: str(v) for k, v in raw.items() if k.startswith("meta_")}
        k = n_components if n_components is not None else len(raw["std"])
        return cls(raw["mean"], raw["components"][:k], raw["std"][:k], output_size, meta)


def uv_layout_fingerprint(head_data) -> str:
    """A short hash of a head model's triangles and UV layout: an albedo model only fits the
    layout it was built in (stored as ``meta["uv_layout"]``)."""
    import hashlib

    h = hashlib.sha1()
    for a in (head_data.faces, head_data.uv_coords, head_data.uv_faces):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def check_uv_layout(model: AlbedoModel, head_data) -> None:
    """Raise FacetwinError if ``model`` was built for another UV layout than ``head_data``'s."""
    built = model.meta.get("uv_layout")
    if built and built != uv_layout_fingerprint(head_data):
        raise FacetwinError(
            f"the albedo model was built for another UV layout ({built}) than head model '{head_data.name}' "
            f"({uv_layout_fingerprint(head_data)}); rebuild it with scripts/build_albedo_model.py"
        )


def _float_tensor(a) -> torch.Tensor:
    if torch.is_tensor(a):
        return a.detach().to(torch.float32).clone()
    return torch.tensor(np.array(a, np.float32))


def load_albedo_model(path: str | Path | None = None, n_components: int | None = None, output_size: int = 256) -> AlbedoModel:
    """The shipped open albedo model (or another .npz built by scripts/build_albedo_model.py)."""
    return AlbedoModel.load(path or ALBEDO_FILE, n_components, output_size)


def uniform_albedo_model(mean_rgb, components_rgb, std, resolution: int = 8, output_size: int = 256, meta=None) -> AlbedoModel:
    """A colour-only model (the same colour on every texel): mean (3,), components (K, 3)
    orthonormal in RGB, std (K,). The fallback used before the UV model exists."""
    mean_rgb = np.asarray(mean_rgb, np.float32)
    comps = np.asarray(components_rgb, np.float32)
    R = resolution
    mean = np.broadcast_to(mean_rgb[:, None, None], (3, R, R))
    # a constant unit RGB vector c spread over R² texels has norm R·|c|: rescale to unit norm
    components = np.broadcast_to(comps[:, :, None, None], (len(comps), 3, R, R)) / R
    return AlbedoModel(mean, components, np.asarray(std, np.float32) * R, output_size, meta)
