"""Held-out evaluation of detail models: does rendering with details lower the photometric error
of the coarse render, and by how much for each network (the paper's Fig. 9 ablation: UNet alone,
MAE without teacher, MAE with teacher)?

On every frame of the held-out clips of a prepared folder (``videos/<clip>.*`` keys), per model:
the L1 photometric error of the coarse render (flat D = 0 normals through the same UV path) and of
the render with the model's detail normals, on rendered ∧ chart ∧ skin pixels
(:meth:`facetwin.models.detail.DetailModel.photometric_errors`, the training runs' ``eval/``
figures), per clip and over all frames; ``gain`` = (coarse − detail) / coarse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facetwin.data.prepared import PreparedDataset, clip_name
from facetwin.errors import FacetwinError


def held_out_frames(root: str | Path, clips: list[str], image_size: int, max_per_clip: int = 0) -> tuple[PreparedDataset, list[int]]:
    """(dataset, indices) of the prepared frames of ``clips`` (clip names, e.g. ``smirk_skarsgard``),
    at most ``max_per_clip`` per clip spread over it (0 = all)."""
    if not clips:
        raise FacetwinError("no held-out clips given (--clips, or a model file whose training config names them)")
    try:
        ds = PreparedDataset(root, image_size, augment=False, sources=[f"videos/{c}." for c in clips])
    except FacetwinError:
        raise FacetwinError(f"none of the clips {', '.join(clips)} is in the prepared folder {root}") from None
    by_clip: dict[str, list[int]] = {}
    for i, k in enumerate(ds.keys):
        by_clip.setdefault(clip_name(k), []).append(i)
    missing = [c for c in clips if c not in by_clip]
    if missing:
        raise FacetwinError(f"held-out clip(s) not in {root}: {', '.join(missing)}")
    chosen = []
    for c in clips:
        idx = by_clip[c]
        if max_per_clip and len(idx) > max_per_clip:
            idx = [idx[int(j)] for j in np.unique(np.linspace(0, len(idx) - 1, max_per_clip).round().astype(int))]
        chosen += idx
    return ds, chosen


@torch.no_grad()
def photometric_table(models: dict, dataset, indices: list[int], batch_size: int = 4, progress: bool = False) -> dict:
    """Photometric errors of ``models`` (name → :class:`~facetwin.models.detail.DetailModel`, one
    coarse model) on ``dataset[indices]``: ``{"frames", "coarse", "models": {name: {"detail",
    "gain", "lower_on"}}, "clips": {clip: {"frames", "coarse", name: detail, ...}}}``."""
    from tqdm import tqdm

    names = list(models)
    per = {n: [] for n in names}
    coarse, clips = [], []
    starts = range(0, len(indices), batch_size)
    for s in tqdm(starts, desc="evaluate details", unit="batch", disable=not progress):
        items = [dataset[i] for i in indices[s:s + batch_size]]
        b = torch.utils.data.default_collate(items)
        clips += [clip_name(k) for k in b["key"]]
        for j, n in enumerate(names):
            m = models[n]
            dev = m.uv_mask.device
            e = m.photometric_errors(b["image"].to(dev), b["skin"].to(dev))
            if j == 0:
                coarse.append(e["coarse"].cpu())
            per[n].append(e["detail"].cpu())
    c = torch.cat(coarse).numpy()
    d = {n: torch.cat(per[n]).numpy() for n in names}
    clips_a = np.array(clips)
    out = {"frames": int(len(c)), "coarse": float(c.mean()), "models": {}, "clips": {}}
    for n in names:
        out["models"][n] = {"detail": float(d[n].mean()), "gain": float((c.mean() - d[n].mean()) / c.mean()),
                            "lower_on": int((d[n] < c).sum())}
    for clip in dict.fromkeys(clips):
        k = clips_a == clip
        out["clips"][clip] = {"frames": int(k.sum()), "coarse": float(c[k].mean()), **{n: float(d[n][k].mean()) for n in names}}
    return out


@torch.no_grad()
def comparison_picture(models: dict, images: torch.Tensor, input_column: bool = True) -> np.ndarray:
    """One row per (B, 3, C, C) crop: [input ·] coarse shading · each model's detail shading (grey
    renders, no albedo: the geometry shows), with a header naming the columns; (H, W, 3) uint8."""
    import cv2

    from facetwin.rendering.visualize import to_uint8

    first = next(iter(models.values()))
    images = images.float().to(first.uv_mask.device)
    C = images.shape[-1]
    geo = first.coarse_geometry(images)
    flat = first.detail_normals(geo.vertices, torch.zeros(len(images), 1, first.map_size, first.map_size).to(images), geo.normals)
    grey, gmask, frags = first.render(geo, flat, C, albedo=False)
    background = images * 0.3 if input_column else torch.full_like(images, 0.5)
    columns = ([("input", images)] if input_column else []) + [("coarse", grey * gmask + (1 - gmask) * background)]
    for name, m in models.items():
        maps = m.maps(images, geo)
        shade, mask, _ = m.render(geo, maps.normals, C, albedo=False, fragments=frags)
        columns.append((name, shade * mask + (1 - mask) * background))
    header = np.full((22, C * len(columns), 3), 255, np.uint8)
    for j, (name, _) in enumerate(columns):
        cv2.putText(header, name[:28], (j * C + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    rows = [np.concatenate([to_uint8(col[i]) for _, col in columns], 1) for i in range(len(images))]
    return np.concatenate([header] + rows, 0)
