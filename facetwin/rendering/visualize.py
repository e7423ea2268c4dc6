"""Pictures: overlays, shaded geometry, landmarks, grids. Every function returns uint8 (H, W, 3)
RGB numpy arrays (the building blocks of every later visual); ``save_png`` writes them.

Inputs may be numpy (H, W, 3) uint8 or float in [0, 1], or torch (3, H, W) / (H, W, 3) floats.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

PRED_COLOUR = (255, 64, 64)   # red: predicted / projected points
GT_COLOUR = (64, 220, 64)     # green: ground truth
EXTRA_COLOUR = (64, 160, 255)  # blue: e.g. silhouette vertices


def to_uint8(image) -> np.ndarray:
    """Any image (numpy/torch, CHW/HWC, uint8/float [0, 1], grey or RGB) → (H, W, 3) uint8."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dim() == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a[..., :3])


def overlay(image, render, alpha, opacity: float = 0.7) -> np.ndarray:
    """Blend a render over an image where ``alpha`` (H, W) or (1, H, W) is 1.

    Returns (H, W, 3) uint8: ``image·(1 − opacity·alpha) + render·opacity·alpha``.
    """
    img = to_uint8(image).astype(np.float32)
    ren = to_uint8(render).astype(np.float32)
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.detach().cpu().numpy()
    a = np.asarray(alpha, np.float32).reshape(img.shape[:2])[..., None] * opacity
    return (img * (1 - a) + ren * a + 0.5).astype(np.uint8)


def render_geometry(vertices: torch.Tensor, faces: torch.Tensor, scale, translation, image_size, lighting: torch.Tensor | None = None, colour=(0.75, 0.75, 0.75)) -> tuple[np.ndarray, np.ndarray]:
    """Grey SH-lit render of one posed mesh with the orthographic camera.

    Args:
        vertices: (V, 3) or (1, V, 3); faces: (F, 3); scale: float; translation: (2,) pixels;
        image_size: H or (H, W); lighting: (9, 3) or (1, 9, 3), a front-top light when None.
    Returns:
        (H, W, 3) uint8 render and (H, W) float alpha mask.
    """
    from facetwin.geometry.camera import orthographic_screen_vertices
    from facetwin.rendering.renderer import MeshRenderer
    from facetwin.rendering.shading import default_lighting

    with torch.no_grad():
        v = torch.as_tensor(vertices, dtype=torch.float32).reshape(1, -1, 3)
        f = torch.as_tensor(faces, dtype=torch.int64)
        s = torch.as_tensor(scale, dtype=torch.float32).reshape(1)
        t = torch.as_tensor(translation, dtype=torch.float32).reshape(1, 2)
        light = default_lighting(1) if lighting is None else torch.as_tensor(lighting, dtype=torch.float32).reshape(1, 9, -1)
        sv = orthographic_screen_vertices(v, s, t)
        out = MeshRenderer(f, image_size=image_size).render(sv, v, None, light)
        rgb = out.irradiance[0] * torch.tensor(colour).reshape(3, 1, 1)
        rgb = rgb * out.mask[0]
    return to_uint8(rgb), out.mask[0, 0].numpy()


def shaded_overlay(image, vertices, faces, scale, translation, lighting=None, opacity: float = 0.75) -> np.ndarray:
    """The usual check picture: grey shaded mesh over the photo it was fitted to."""
    img = to_uint8(image)
    ren, alpha = render_geometry(vertices, faces, scale, translation, img.shape[:2], lighting)
    return overlay(img, ren, alpha, opacity)


def draw_landmarks(image, pred=None, gt=None, radius: float = 1.5, connect: bool = False, extra=None) -> np.ndarray:
    """Draw 2D points (pixels, the project's convention) on an image.

    Args:
        pred: (K, 2) predicted points (red); gt: (K, 2) ground truth (green); with both, a thin
            line joins each pair; extra: (M, 2) further points (blue), e.g. silhouette vertices.
    """
    pil = Image.fromarray(to_uint8(image))
    draw = ImageDraw.Draw(pil)
    as_np = lambda p: None if p is None else np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, np.float32).reshape(-1, 2)  # noqa: E731
    pred, gt, extra = as_np(pred), as_np(gt), as_np(extra)
    if connect and pred is not None and gt is not None:
        for (x0, y0), (x1, y1) in zip(pred, gt):
            draw.line([(x0, y0), (x1, y1)], fill=(255, 255, 0), width=1)
    for pts, colour in ((extra, EXTRA_COLOUR), (gt, GT_COLOUR), (pred, PRED_COLOUR)):
        if pts is None:
            continue
        for x, y in pts:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return np.asarray(pil)


def image_grid(images, columns: int | None = None, pad: int = 2, background=(255, 255, 255)) -> np.ndarray:
    """Tile images (resized to the first one's size) into a grid, row-major."""
    tiles = [to_uint8(im) for im in images]
    if not tiles:
        raise ValueError("no images")
    h, w = tiles[0].shape[:2]
    tiles = [t if t.shape[:2] == (h, w) else np.asarray(Image.fromarray(t).resize((w, h), Image.BILINEAR)) for t in tiles]
    cols = columns or len(tiles)
    rows = (len(tiles) + cols - 1) // cols
    grid = np.empty((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, 3), np.uint8)
    grid[:] = background
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = t
    return grid


def save_png(path, image) -> Path:
    """Write an image as PNG (parent folders created), atomically through facetwin.outputs."""
    from facetwin.outputs import write_image

    return write_image(path, to_uint8(image))
