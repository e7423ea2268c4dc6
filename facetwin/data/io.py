"""Robust image reading: every supported file becomes an (H, W, 3) uint8 RGB array.

Handles EXIF orientation, 16-bit PNG/TIFF, RGBA/LA/P with transparency (composited on
white), grayscale, CMYK JPEG, and very large images (downscaled while decoding, with a hard
pixel cap against decompression bombs). Anything unreadable raises :class:`ImageReadError`
(a :class:`FacetwinError`) with one clear line.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from facetwin.errors import FacetwinError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}

# Long side after loading; faces larger than this are more than enough for 224-px crops.
DEFAULT_MAX_SIDE = 2048
# Refuse to even decode images above this many pixels (decompression-bomb guard, ~24k x 24k).
MAX_PIXELS = 600_000_000


class ImageReadError(FacetwinError):
    """The file is not a readable image."""


def is_image_path(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video_path(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def load_image(path, max_side: int | None = DEFAULT_MAX_SIDE) -> tuple[np.ndarray, float]:
    """Read ``path`` as RGB uint8 ``(H, W, 3)``.

    Returns ``(image, scale)`` where ``scale`` maps the upright (EXIF-rotated) original pixel
    coordinates to the returned array: ``x_returned = scale * x_original`` (1.0 unless the
    image was downscaled to ``max_side``).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"unreadable image: {path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(path) as im:
                return _decode(im, max_side)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"unreadable image: {path.name}: too many pixels ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"unreadable image: {path.name}: not an image file") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(f"unreadable image: {path.name}: {_one_line(exc)}") from None
    except MemoryError:
        raise ImageReadError(f"unreadable image: {path.name}: out of memory while decoding") from None


def _one_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _decode(im: Image.Image, max_side: int | None) -> tuple[np.ndarray, float]:
    w0, h0 = im.size
    if w0 <= 0 or h0 <= 0:
        raise ImageReadError("unreadable image: empty image")
    orientation = 1
    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # broken EXIF blocks must not make the pixels unreadable
        orientation = 1
    # JPEG: let libjpeg downscale by 1/2, 1/4, 1/8 while decoding (cheap for 8000x8000).
    if max_side and im.format == "JPEG" and max(w0, h0) > 2 * max_side:
        im.draft(im.mode if im.mode in ("RGB", "L", "CMYK") else "RGB", (max_side, max_side))
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    im.load()
    if orientation != 1:
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:
            pass
    upright_w = h0 if orientation in (5, 6, 7, 8) else w0
    im = _to_rgb(im)
    if max_side and max(im.size) > max_side:
        ratio = max_side / max(im.size)
        new_size = (max(1, round(im.size[0] * ratio)), max(1, round(im.size[1] * ratio)))
        im = im.resize(new_size, Image.Resampling.LANCZOS if max(im.size) < 3 * max_side else Image.Resampling.BOX)
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageReadError(f"unreadable image: unexpected pixel layout {arr.shape}")
    return np.ascontiguousarray(arr), arr.shape[1] / upright_w


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return im
    return im.convert("RGB")  # L, 1, CMYK (Pillow undoes Adobe inversion), YCbCr, LAB, HSV
