"""Reading any image a user or a dataset folder can hand us into RGB uint8 (or a mask into bool),
or a clear ImageError.

Covers files, bytes, PIL images and arrays; EXIF rotation; every PIL mode (L, LA, P, RGBA, CMYK,
16-bit, float); JPEGs too large to decode whole are decoded at 1/2, 1/4 or 1/8 scale; other
decompression bombs refused before decoding; PIL's warnings never reach the user's terminal.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

# Decode at most this many pixels (PIL's own default, ~89 Mpx): larger JPEGs are decoded at a
# reduced scale, larger images of other formats are refused before any pixel is decoded.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# Masks (one bit of information a pixel) may be twice as large: a mask painted over a 108 Mpx
# photo at full size must still load. PIL itself refuses anything larger when opening it.
MAX_MASK_PIXELS = 2 * MAX_PIXELS
MIN_SIDE = 16  # smaller than this is not a photo we can find a face in
JPEG_SCALES = (1, 2, 4, 8)  # the reductions libjpeg decodes straight from the DCT
# Equal channels up to this difference (JPEG chroma noise) still count as a greyscale image.
GREY_TOLERANCE = 6

_OPEN_LOCK = threading.Lock()  # warnings.catch_warnings is process-wide: one opener at a time
_JPEG_MAGIC = b"\xff\xd8\xff"


class ImageError(ValueError):
    """An input that cannot become an RGB image; `.reason` is a stable slug for manifests and UIs.

    Reasons: "unreadable", "not_image", "too_large", "too_small".
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


Source = str | Path | bytes | Image.Image | np.ndarray


def load_image(src: Source, max_side: int | None = 2048) -> np.ndarray:
    """Any image source -> RGB uint8 (H, W, 3), EXIF-upright, longest side at most `max_side`.

    `max_side=None` keeps the image's own size (JPEGs over MAX_PIXELS still come at a reduced
    scale). Raises ImageError (reasons above).
    """
    return read_image(src, max_side)[0]


def read_image(src: Source, max_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB uint8 (H, W, 3), (width, height) of the image as stored, upright): the size before any
    reduction, so a caller can tell the person that (and how much) it was reduced.

    Raises ImageError: "unreadable", "not_image", "too_large" (a non-JPEG over MAX_PIXELS),
    "too_small" (a side under MIN_SIDE).
    """
    if isinstance(src, np.ndarray):
        rgb = _array_to_rgb(src)
        size = (rgb.shape[1], rgb.shape[0])
    else:
        im, stored = (src, src.size) if isinstance(src, Image.Image) else _open(src, max_side)
        rgb, size = _pil_to_rgb(im, stored)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError("too_small", f"image is only {w}x{h} pixels")
    if max_side is not None and max(h, w) > max_side:
        rgb = _downscale(rgb, max_side)
    elif h * w > MAX_PIXELS:  # an array or PIL image handed over whole
        rgb = _downscale(rgb, int(max(h, w) * (MAX_PIXELS / (h * w)) ** 0.5))
    return np.ascontiguousarray(rgb), size


def load_mask(src: Source) -> np.ndarray:
    """A mask image (file, bytes, PIL image or array) -> bool (H, W), True = the hole.

    With transparency (RGBA, LA, PA, P with a transparent colour) the painted pixels are the hole:
    a white (or any colour) shape on a transparent layer. When the painted part is itself two-toned
    (white on opaque black, with transparent margins), only its light part is. Without
    transparency: light pixels (over half the value range; any channel) are the hole, in 8 or
    16 bits; a 0/1 mask also works. Not upright-corrected: a mask is in the photo's upright
    coordinates already. Raises ImageError ("unreadable", "not_image", "too_large").
    """
    if isinstance(src, np.ndarray):
        return mask_from_array(src)
    im = src if isinstance(src, Image.Image) else _open(src, None, MAX_MASK_PIXELS, "mask")[0]
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError("unreadable", f"cannot decode the mask image ({e})") from e
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "La", "RGBa"):
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode == "1":
        return np.asarray(im, dtype=bool).copy()
    elif mode.startswith("I;16"):
        return mask_from_array(np.asarray(im).astype(np.uint16))
    elif mode == "RGB" and "transparency" in im.info:  # a tRNS colour key
        im = im.convert("RGBA")
    elif mode == "L" and "transparency" in im.info:
        im = im.convert("LA")
    return mask_from_array(np.asarray(im))


def mask_from_array(a: np.ndarray) -> np.ndarray:
    """(H, W) grey, (H, W, 2) grey+alpha, (H, W, 3) RGB or (H, W, 4) RGBA of any numeric dtype ->
    bool (H, W) by the rules of `load_mask`. Raises ImageError("not_image") for other shapes."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.size == 0 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ImageError("not_image", f"an array of shape {a.shape} is not a mask")
    if a.dtype == bool:
        return a.copy()
    if a.ndim == 3 and a.shape[2] in (2, 4):
        colour, alpha = a[:, :, :-1], a[:, :, -1]
        opaque = _light(alpha)
        if not opaque.all():
            return _painted(opaque, _light(colour.max(axis=2)))
        a = colour
    return _light(a.max(axis=2) if a.ndim == 3 else a)


def is_greyscale(rgb: np.ndarray, where: np.ndarray | None = None) -> bool:
    """Whether an RGB uint8 (H, W, 3) image has no colour (R = G = B up to JPEG chroma noise),
    looking only at the pixels `where` (bool (H, W)) is True when given."""
    px = rgb.reshape(-1, 3) if where is None else rgb[np.asarray(where, dtype=bool)]
    if len(px) == 0:
        return False
    px = px.astype(np.int16)
    spread = np.abs(px - px.mean(axis=1, keepdims=True).astype(np.int16)).max(axis=1)
    # 99.9% of pixels within the tolerance: a few coloured pixels (a watermark) do not count.
    return float(np.quantile(spread, 0.999)) <= GREY_TOLERANCE


def to_greyscale(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the same shape with R = G = B = its luma (ITU-R BT.601)."""
    y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    y = np.clip(y + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(y[:, :, None], 3, axis=2)


# --- decoding -----------------------------------------------------------------------------------


def _open(
    src: str | Path | bytes,
    max_side: int | None,
    max_pixels: int = MAX_PIXELS,
    what: str = "image",
) -> tuple[Image.Image, tuple[int, int]]:
    """(image opened lazily (header only), (width, height) as stored): a large JPEG is set to
    decode at a reduced scale; anything still over `max_pixels` is refused before a pixel is
    decoded."""
    name = "<bytes>" if isinstance(src, bytes | bytearray) else Path(src).name
    if isinstance(src, bytes | bytearray):
        head, fp = bytes(src[:3]), io.BytesIO(src)
    else:
        path = Path(src)
        if not path.is_file():
            raise ImageError("unreadable", f"{name}: no such file")
        if path.stat().st_size == 0:
            raise ImageError("unreadable", f"{name}: empty file")
        with open(path, "rb") as f:
            head = f.read(3)
        fp = str(path)
    try:
        if head == _JPEG_MAGIC:
            # Straight to the JPEG reader: Image.open would check the full pixel count (and
            # refuse a 200 Mpx phone photo) before the reduced-scale decode is set up.
            im = JpegImagePlugin.JpegImageFile(fp)
        else:
            with _OPEN_LOCK, warnings.catch_warnings():
                # PIL warns between 1x and 2x its limit; the size is checked below instead.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(fp)
    except Image.DecompressionBombError as e:
        raise ImageError("too_large", f"{name}: refused, {_too_many(what, e)}") from e
    except (UnidentifiedImageError, SyntaxError) as e:
        raise ImageError("not_image", f"{name}: not an image file PIL can read") from e
    except OSError as e:
        raise ImageError("unreadable", f"{name}: cannot open ({e})") from e
    w, h = im.size
    if im.format == "JPEG" and isinstance(im, JpegImagePlugin.JpegImageFile):
        s = _jpeg_scale(w, h, max_pixels, max_side)
        if s > 1:
            im.draft(im.mode, (w // s, h // s))
    dw, dh = im.size
    if dw * dh > max_pixels:
        im.close()
        raise ImageError(
            "too_large",
            f"{name}: refused, {w}x{h} is more than {max_pixels:,} pixels; "
            + (
                "save it at a smaller size with the same proportions (it is scaled to the photo)"
                if what == "mask"
                else "save it as a JPEG or at a smaller size"
            ),
        )
    return im, (w, h)


def _jpeg_scale(w: int, h: int, max_pixels: int, max_side: int | None) -> int:
    """The libjpeg reduction to decode at: the least that fits `max_pixels`, or more while the
    image stays at least `max_side` long (decoding less is faster, and it is downscaled anyway)."""
    s = next((s for s in JPEG_SCALES if -(-w // s) * -(-h // s) <= max_pixels), JPEG_SCALES[-1])
    if max_side is not None:
        for t in JPEG_SCALES:
            if t > s and -(-max(w, h) // t) >= max_side:
                s = t
    return s


def _too_many(what: str, err: Exception) -> str:
    hint = "a mask this large cannot be read" if what == "mask" else "too many pixels to decode"
    return f"{hint} ({err})"


def _pil_to_rgb(im: Image.Image, stored: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB uint8 (H, W, 3) upright, the stored (width, height) turned upright as well)."""
    try:
        im.load()
        turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation: a quarter turn
        im = ImageOps.exif_transpose(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError("too_large", f"refused, too many pixels ({e})") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError("unreadable", f"cannot decode image ({e})") from e
    size = (stored[1], stored[0]) if turned else (stored[0], stored[1])
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
        return _array_to_rgb(np.asarray(im)), size
    if im.mode.startswith("I;16"):
        return _array_to_rgb(np.asarray(im).astype(np.uint16)), size  # 16-bit grey: 1/257
    # I (32-bit int) / F (float): keep the numeric range, then scale to 8 bit.
    return _array_to_rgb(np.asarray(im if im.mode in ("I", "F") else im.convert("F"))), size


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


def _light(a: np.ndarray) -> np.ndarray:
    """Pixels over half the value range the data uses: 0/1, 8-bit, 16-bit, or floats in [0, 1]."""
    hi = float(np.nanmax(a)) if a.size else 0.0
    if np.issubdtype(a.dtype, np.floating) and hi <= 1.0:
        return a > 0.5
    if hi <= 1:
        return a > 0
    if hi <= 255 or a.dtype == np.uint8:
        return a > 127
    if hi <= 65535:
        return a > 32767
    return a > hi / 2


def _painted(opaque: np.ndarray, light: np.ndarray) -> np.ndarray:
    """The hole on a layer with transparency: what is painted; only its light part when the
    painted part holds both light and dark areas (each at least 1% of it)."""
    n = int(opaque.sum())
    if n == 0:
        return opaque
    n_light = int((opaque & light).sum())
    if min(n_light, n - n_light) >= 0.01 * n:
        return opaque & light
    return opaque


def _downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
