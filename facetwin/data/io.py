"""Robust image reading: every supported file becomes an (H, W, 3) uint8 RGB array.

Handles EXIF orientation, 16-bit PNG/TIFF, 32-bit integer and float images (float in [0, 1]
or [0, 255]; float RGB TIFFs through tifffile), RGBA/LA/P with transparency (composited on
white), grayscale, CMYK JPEG, and very large images. Memory is bounded before any pixel is
decoded: the header's size is checked against :data:`MAX_DECODE_PIXELS` after the decoder's
own downscaling (JPEG decodes at 1/2, 1/4, 1/8 directly), with a hard cap
(:data:`MAX_PIXELS`) against decompression bombs. Images too thin to hold a face
(:data:`MIN_SIDE`) and float images with NaN/Inf pixels are refused. Anything unreadable raises
:class:`ImageReadError` (a :class:`FacetwinError`) with one clear line.
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
# Pixels actually decoded (after JPEG's decode-time downscaling): ~300 MB as 8-bit RGB.
MAX_DECODE_PIXELS = 100_000_000
# Shorter side below this cannot hold a detectable face (the detector's window is 80 px).
MIN_SIDE = 16


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
            try:
                im = Image.open(path)
            except UnidentifiedImageError:
                if path.suffix.lower() in (".tif", ".tiff"):
                    return _decode_tiff(path, max_side)  # float/multi-sample TIFFs Pillow cannot read
                raise
            with im:
                return _decode(im, max_side)
    except ImageReadError as exc:
        if str(exc).startswith("unreadable image: ") and path.name in str(exc):
            raise
        raise ImageReadError(f"unreadable image: {path.name}: {str(exc).removeprefix('unreadable image: ')}") from None
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


def check_shape(width: int, height: int) -> None:
    """Refuse sizes no face fits in (``1 x 20000``) with one line."""
    if width <= 0 or height <= 0:
        raise ImageReadError("empty image")
    if min(width, height) < MIN_SIDE:
        raise ImageReadError(f"{width}x{height} px is too thin to hold a face (the shorter side needs at least {MIN_SIDE} px)")


def _check_budget(width: int, height: int) -> None:
    if width * height > MAX_DECODE_PIXELS:
        raise ImageReadError(f"{width}x{height} px ({width * height / 1e6:.0f} Mpx) is more than the "
                             f"{MAX_DECODE_PIXELS / 1e6:.0f} Mpx facetwin decodes; downscale it first")


def _decode(im: Image.Image, max_side: int | None) -> tuple[np.ndarray, float]:
    w0, h0 = im.size
    check_shape(w0, h0)
    orientation = 1
    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # broken EXIF blocks must not make the pixels unreadable
        orientation = 1
    # JPEG: let libjpeg downscale by 1/2, 1/4, 1/8 while decoding (cheap for 8000x8000).
    if max_side and im.format == "JPEG" and max(w0, h0) > 2 * max_side:
        im.draft(im.mode if im.mode in ("RGB", "L", "CMYK") else "RGB", (max_side, max_side))
    _check_budget(*im.size)  # what the decoder will really produce, before it allocates it
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    im.load()
    if orientation != 1:
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:
            pass
    upright_w = h0 if orientation in (5, 6, 7, 8) else w0
    im = _to_rgb(im)
    return _finish(im, max_side, upright_w)


def _finish(im: Image.Image, max_side: int | None, upright_w: int) -> tuple[np.ndarray, float]:
    if max_side and max(im.size) > max_side:
        ratio = max_side / max(im.size)
        new_size = (max(1, round(im.size[0] * ratio)), max(1, round(im.size[1] * ratio)))
        im = im.resize(new_size, Image.Resampling.LANCZOS if max(im.size) < 3 * max_side else Image.Resampling.BOX)
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageReadError(f"unreadable image: unexpected pixel layout {arr.shape}")
    return np.ascontiguousarray(arr), arr.shape[1] / upright_w


def _decode_tiff(path: Path, max_side: int | None) -> tuple[np.ndarray, float]:
    """TIFFs Pillow cannot open (float RGB, many samples): header size first, then tifffile."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            w, h = int(page.imagewidth), int(page.imagelength)
            check_shape(w, h)
            _check_budget(w, h)
            a = page.asarray()
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"not a readable TIFF ({_one_line(exc)})") from None
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):  # planar samples
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3:
        a = a[..., :3] if a.shape[-1] >= 3 else a[..., 0]
    rgb = _to_uint8(a, "F" if a.dtype.kind == "f" else ("I;16" if a.dtype.itemsize == 2 else "I"))
    im = Image.fromarray(rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2), "RGB")
    return _finish(im, max_side, w)


def _to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Integer or float samples → uint8, by the range the data is in (float: [0, 1] or [0, 255])."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ImageReadError("the image has NaN or infinite pixel values")
        a = a.astype(np.float32)
        hi = float(a.max()) if a.size else 0.0
        top = 1.0 if hi <= 1.0 else 255.0 if hi <= 255.0 else 65535.0
    else:
        hi = int(a.max()) if a.size else 0
        top = 65535.0 if mode.startswith("I;16") or 255 < hi <= 65535 else 255.0 if hi <= 255 else float(np.iinfo(a.dtype).max)
        a = a.astype(np.float32)
    return np.clip(a * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = _to_uint8(np.asarray(im), mode)
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
