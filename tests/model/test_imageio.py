"""load_image: every kind of input gets an RGB uint8 image or an ImageError with a clear reason."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from model.imageio import (
    ImageError,
    is_greyscale,
    load_image,
    load_mask,
    mask_from_array,
    read_image,
    to_greyscale,
)


def _jpeg(img: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (the pixel data is never needed to refuse it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\x00" * 16)
    body += (
        struct.pack(">I", len(idat))
        + b"IDAT"
        + idat
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    )
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.fixture(scope="module")
def small(astronaut) -> np.ndarray:
    return np.ascontiguousarray(astronaut[::4, ::4])  # (128, 128, 3)


def test_rgb_jpeg_file(tmp_path, small):
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg(small))
    img = load_image(path)
    assert img.dtype == np.uint8 and img.shape == small.shape
    assert np.abs(img.astype(int) - small).mean() < 4


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"hello, I am a text file\n", "not_image"),
        (b"", "unreadable"),
    ],
)
def test_not_an_image(tmp_path, content, reason):
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert e.value.reason == reason and "fake.jpg" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "nope.png")
    assert e.value.reason == "unreadable"


def test_truncated_jpeg(small):
    data = _jpeg(small)
    with pytest.raises(ImageError) as e:
        load_image(data[: len(data) // 2])
    assert e.value.reason == "unreadable"


def test_greyscale_and_bilevel(small):
    grey = Image.fromarray(small).convert("L")
    for im in (grey, grey.convert("1")):
        img = load_image(_png(im))
        assert img.shape == (*small.shape[:2], 3)
        assert (img[:, :, 0] == img[:, :, 1]).all() and (img[:, :, 1] == img[:, :, 2]).all()


def test_rgba_composited_on_white(small):
    rgba = np.dstack([small, np.full(small.shape[:2], 255, np.uint8)])
    rgba[:, :64, 3] = 0  # left half transparent
    img = load_image(_png(Image.fromarray(rgba)))
    assert (img[:, :64] == 255).all()
    assert (img[:, 64:] == small[:, 64:]).all()


def test_palette_with_and_without_transparency(small):
    pal = Image.fromarray(small).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    img = load_image(_png(pal))
    assert img.shape == small.shape and np.abs(img.astype(int) - small).mean() < 12
    pal.info["transparency"] = 0
    assert load_image(_png(pal)).shape == small.shape


def test_cmyk_jpeg(small):
    cmyk = Image.fromarray(small).convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=95)
    img = load_image(buf.getvalue())
    assert img.shape == small.shape
    assert np.abs(img.astype(int) - small).mean() < 10


def test_16bit_png():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    im = Image.fromarray(ramp)
    assert im.mode.startswith("I;16")
    img = load_image(_png(im))
    assert img.shape == (32, 64, 3)
    assert img[0, 0, 0] == 0 and img[0, -1, 0] == 255
    assert np.all(np.diff(img[0, :, 0].astype(int)) >= 0)


def test_exif_rotation(small):
    # Stored turned a quarter anticlockwise, tagged "rotate 90 clockwise to display" (6).
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = np.ascontiguousarray(np.rot90(small[:, :96], 1))  # (96, 128, 3)
    img = load_image(_jpeg(stored, exif=exif.tobytes()))
    assert img.shape == small[:, :96].shape
    assert np.abs(img.astype(int) - small[:, :96]).mean() < 5
    assert read_image(_jpeg(stored, exif=exif.tobytes()))[1] == (96, 128)  # upright (w, h)


def test_large_image_downscaled():
    big = np.zeros((600, 1500, 3), np.uint8)
    img = load_image(_jpeg(big), max_side=500)
    assert img.shape == (200, 500, 3)


def test_huge_jpeg_decoded_at_reduced_scale():
    big = np.zeros((1000, 4400, 3), np.uint8)
    big[:, 2200:] = 200  # right half bright: survives the reduced-scale decode
    img = load_image(_jpeg(big))
    assert img.shape == (465, 2048, 3)
    assert img[:, :900].mean() < 10 and img[:, 1150:].mean() > 190


@pytest.mark.parametrize("side", [10_000, 40_000])  # PIL's warning zone, and its error zone
def test_decompression_bomb_refused(side):
    with pytest.raises(ImageError) as e:
        load_image(_png_header_only(side, side))
    assert e.value.reason == "too_large"


def test_too_small(small):
    with pytest.raises(ImageError) as e:
        load_image(small[:8, :8])
    assert e.value.reason == "too_small"


def test_arrays_of_any_kind(small):
    assert load_image(small.astype(np.float32) / 255).dtype == np.uint8
    assert np.abs(load_image(small.astype(np.float32) / 255).astype(int) - small).max() <= 1
    assert load_image(small[:, :, :1]).shape == small.shape
    assert load_image(small[:, :, 0].astype(np.uint16) * 257)[5, 5, 0] == small[5, 5, 0]
    assert load_image(np.ones((32, 32), bool))[0, 0, 0] == 255
    with pytest.raises(ImageError) as e:
        load_image(np.zeros((32, 32, 2), np.uint8))
    assert e.value.reason == "not_image"


def test_pil_image_input(small):
    assert load_image(Image.fromarray(small)).shape == small.shape


# --- very large JPEGs (issue 14, item 6) ---------------------------------------------------------


def _big_jpeg(size: tuple[int, int], mode: str = "RGB", colour=(90, 120, 150)) -> bytes:
    """A flat JPEG of `size` (width, height): a few MB even at 100+ megapixels."""
    buf = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def phone_108mp() -> bytes:
    """A 108-megapixel phone photo (12000x9000), over PIL's 89.5 Mpx bomb limit."""
    return _big_jpeg((12000, 9000))


def test_108mp_jpeg_is_decoded_at_half_scale_without_warnings(phone_108mp, capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img, size = read_image(phone_108mp)
    assert size == (12000, 9000)
    assert img.shape == (4500, 6000, 3) and img.dtype == np.uint8
    assert np.abs(img[100, 100].astype(int) - (90, 120, 150)).max() <= 3
    assert [str(w.message) for w in caught] == []
    out = capfd.readouterr()
    assert out.out == "" and out.err == ""


def test_108mp_jpeg_file_with_max_side(tmp_path, phone_108mp):
    path = tmp_path / "phone.jpg"
    path.write_bytes(phone_108mp)
    assert load_image(path).shape == (1536, 2048, 3)  # decoded at 1/4 (3000x2250), then 2048 long


def test_200mp_jpeg_past_pils_hard_limit_is_decoded_too():
    """Over twice PIL's limit Image.open itself raises; the JPEG reader is used directly."""
    img, size = read_image(_big_jpeg((16384, 12288), mode="L"))
    assert size == (16384, 12288)
    assert img.shape == (6144, 8192, 3)  # 1/2 scale: 50 Mpx


@pytest.mark.parametrize("side", [10_000, 40_000])
def test_png_bomb_refused_without_printing_a_warning(side, capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as e:
            read_image(_png_header_only(side, side), max_side=None)
    assert e.value.reason == "too_large" and "pixels" in str(e.value)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""


# --- masks (issue 14, item 4) ---------------------------------------------------------------------

POLYGON = np.array([[40, 60], [150, 50], [170, 120], [100, 150], [30, 110]], np.int32)


@pytest.fixture(scope="module")
def polygon() -> np.ndarray:
    """bool (160, 200): the drawn shape every mask variant below encodes."""
    m = np.zeros((160, 200), np.uint8)
    cv2.fillPoly(m, [POLYGON], 1)
    return m.astype(bool)


def _mask_variants(poly: np.ndarray) -> dict[str, Image.Image]:
    white = np.where(poly, 255, 0).astype(np.uint8)
    rgba = np.zeros((*poly.shape, 4), np.uint8)
    rgba[poly] = (255, 255, 255, 255)  # white polygon, transparent (0, 0, 0, 0) elsewhere
    black_on_clear = np.zeros((*poly.shape, 4), np.uint8)
    black_on_clear[poly, 3] = 255  # a black polygon on a transparent layer: painted = the hole
    margins = np.zeros((*poly.shape, 4), np.uint8)
    margins[10:-10, 10:-10] = (0, 0, 0, 255)  # opaque black card with transparent margins ...
    margins[poly] = (255, 255, 255, 255)  # ... and the white polygon on it
    red = np.zeros((*poly.shape, 3), np.uint8)
    red[poly] = (220, 30, 30)
    la = np.dstack([np.full(poly.shape, 255, np.uint8), white])  # white everywhere, alpha = shape
    pal = Image.fromarray(white).convert("P")  # palette, no transparency: white on black
    pal_t = Image.fromarray(np.where(poly, 1, 0).astype(np.uint8), "P")
    pal_t.putpalette([0, 0, 0, 255, 255, 255])
    pal_t.info["transparency"] = 0  # palette index 0 transparent, index 1 white
    return {
        "L": Image.fromarray(white),
        "1": Image.fromarray(poly),
        "RGB": Image.fromarray(np.dstack([white] * 3)),
        "RGB red": Image.fromarray(red),
        "RGBA": Image.fromarray(rgba),
        "RGBA opaque": Image.fromarray(np.dstack([white] * 3 + [np.full_like(white, 255)])),
        "RGBA black on clear": Image.fromarray(black_on_clear),
        "RGBA margins": Image.fromarray(margins),
        "LA": Image.fromarray(la, "LA"),
        "P": pal,
        "P transparent": pal_t,
        "I;16": Image.fromarray(np.where(poly, 65535, 0).astype(np.uint16)),
        "I;16 0/1": Image.fromarray(poly.astype(np.uint16)),
    }


@pytest.mark.parametrize("kind", list(_mask_variants(np.eye(4, dtype=bool))))
def test_mask_of_every_kind_is_the_drawn_shape(kind, polygon):
    im = _mask_variants(polygon)[kind]
    if kind.startswith("I;16"):
        assert im.mode.startswith("I;16")
    png = _png(im)
    decoded = Image.open(io.BytesIO(png))
    assert decoded.mode == im.mode or kind.startswith("I;16")
    mask = load_mask(png)
    assert mask.dtype == bool and mask.shape == polygon.shape
    assert np.array_equal(mask, polygon)  # not 98.5% hole: transparency is never white


def test_mask_from_arrays(polygon):
    rgba = np.zeros((*polygon.shape, 4), np.uint8)
    rgba[polygon] = 255
    assert np.array_equal(mask_from_array(rgba), polygon)
    assert np.array_equal(mask_from_array(polygon.astype(np.float32)), polygon)
    assert np.array_equal(mask_from_array(polygon.astype(np.uint8) * 255), polygon)
    with pytest.raises(ImageError) as e:
        mask_from_array(np.zeros((4, 4, 5), np.uint8))
    assert e.value.reason == "not_image"


def test_mask_that_is_not_an_image():
    with pytest.raises(ImageError) as e:
        load_mask(b"not a png")
    assert e.value.reason == "not_image"


# --- greyscale ------------------------------------------------------------------------------------


def test_greyscale_detection(small):
    grey = np.repeat(np.asarray(Image.fromarray(small).convert("L"))[:, :, None], 3, axis=2)
    assert is_greyscale(grey) and not is_greyscale(small)
    # An RGB JPEG of a grey picture carries a little chroma noise: still grey.
    assert is_greyscale(np.asarray(Image.open(io.BytesIO(_jpeg(grey)))))
    y = to_greyscale(small)
    assert y.shape == small.shape and (y[..., 0] == y[..., 2]).all() and is_greyscale(y)
