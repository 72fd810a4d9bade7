"""load_image: every kind of input gets an RGB uint8 image or an ImageError with a clear reason."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from model.imageio import ImageError, load_image


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
