"""Reading any image a user or a dataset folder can hand us into RGB uint8, or a clear ImageError.

Covers files, bytes, PIL images and arrays; EXIF rotation; every PIL mode (L, LA, P, RGBA, CMYK,
16-bit, float); huge images downscaled on load; decompression bombs refused before decoding.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse anything with more pixels than this before decoding it (PIL's own default, ~89 Mpx).
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
MIN_SIDE = 16  # smaller than this is not a photo we can find a face in


class ImageError(ValueError):
    """An input that cannot become an RGB image; `.reason` is a stable slug for manifests and UIs."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def load_image(
    src: str | Path | bytes | Image.Image | np.ndarray, max_side: int = 2048
) -> np.ndarray:
    """Any image source -> RGB uint8 (H, W, 3), EXIF-upright, longest side at most `max_side`."""
    if isinstance(src, np.ndarray):
        rgb = _array_to_rgb(src)
    else:
        im = src if isinstance(src, Image.Image) else _open(src)
        rgb = _pil_to_rgb(im, max_side)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError("too_small", f"image is only {w}x{h} pixels")
    if max(h, w) > max_side:
        rgb = _downscale(rgb, max_side)
    return np.ascontiguousarray(rgb)


def _open(src: str | Path | bytes) -> Image.Image:
    """Open lazily (header only) and refuse bombs before any pixel is decoded."""
    name = "<bytes>" if isinstance(src, bytes) else str(src)
    if not isinstance(src, bytes):
        path = Path(src)
        if not path.is_file():
            raise ImageError("unreadable", f"{name}: no such file")
        if path.stat().st_size == 0:
            raise ImageError("unreadable", f"{name}: empty file")
    fp = io.BytesIO(src) if isinstance(src, bytes) else str(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError("too_large", f"{name}: refused, too many pixels ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageError("not_image", f"{name}: not an image file PIL can read") from e
    except OSError as e:
        raise ImageError("unreadable", f"{name}: cannot open ({e})") from e
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageError("too_large", f"{name}: refused, {w}x{h} is more than {MAX_PIXELS} pixels")
    return im


def _pil_to_rgb(im: Image.Image, max_side: int) -> np.ndarray:
    try:
        if im.format == "JPEG" and max(im.size) > 2 * max_side:
            # Decode a huge JPEG at 1/2, 1/4 or 1/8 scale straight from the DCT: much faster.
            im.draft("RGB" if im.mode != "CMYK" else "CMYK", (max_side, max_side))
        im.load()
        im = ImageOps.exif_transpose(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError("too_large", f"refused, too many pixels ({e})") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError("unreadable", f"cannot decode image ({e})") from e
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
    elif mode == "CMYK" or mode == "YCbCr" or mode == "LAB" or mode == "HSV":
        im = im.convert("RGB")
    elif mode == "1":
        im = im.convert("L")
    if im.mode in ("RGB", "RGBA", "L"):
        return _array_to_rgb(np.asarray(im))
    if im.mode.startswith("I;16"):
        return _array_to_rgb(np.asarray(im).astype(np.uint16))  # 16-bit grey: scaled by 1/257
    # I (32-bit int) / F (float): keep the numeric range, then scale to 8 bit.
    return _array_to_rgb(np.asarray(im if im.mode in ("I", "F") else im.convert("F")))


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    """(H,W) / (H,W,1) / (H,W,3) / (H,W,4) of any numeric dtype -> RGB uint8 (alpha on white)."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise ImageError("not_image", f"array of shape {a.shape} is not an image")
    a = _to_uint8(a)
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:  # composite on white
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        rgb = a[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return (rgb + 0.5).astype(np.uint8)
    return a


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return (a.astype(np.uint32) // 257).astype(np.uint8)
    f = a.astype(np.float64)
    finite = f[np.isfinite(f)]
    hi = float(finite.max()) if finite.size else 0.0
    lo = float(finite.min()) if finite.size else 0.0
    f = np.nan_to_num(f, nan=0.0, posinf=hi, neginf=lo)
    if np.issubdtype(a.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        f = f * 255.0  # float image in [0, 1]
    elif hi > 255.0:
        f = f * (255.0 / (65535.0 if hi <= 65535.0 else hi))  # 16-bit (or wider) range
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


def _downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
