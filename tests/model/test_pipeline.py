"""model.pipeline on skimage's astronaut: prepare, synthetic masks, every method, paste back, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model import pipeline
from model.methods import METHODS


@pytest.fixture(scope="module", autouse=True)
def untrained():
    """Randomly initialised networks (tests only): every method can run without shipped weights."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(pipeline.UNTRAINED_ENV, "1")
        yield


@pytest.fixture(scope="module")
def prepared(astronaut) -> pipeline.Prepared:
    return pipeline.prepare(astronaut)


def test_prepare_aligns_the_face_and_predicts_a_mask(prepared, astronaut):
    assert prepared.photo.shape == astronaut.shape
    assert (
        prepared.aligned.image.shape == (256, 256, 3) and prepared.aligned.image.dtype == np.uint8
    )
    assert prepared.mask.shape == (256, 256) and prepared.mask.dtype == bool
    # Untrained networks here: a region ("segmenter") or the "no mask" answer, with its message.
    assert prepared.mask_source in ("segmenter", "none")
    if prepared.mask_source == "none":
        assert not prepared.mask.any()
        assert any("No face mask was found" in m for m in prepared.messages)
    assert all(isinstance(m, str) for m in prepared.messages)


def test_synthetic_mask_keeps_the_face_as_ground_truth(prepared):
    masked = pipeline.with_synthetic_mask(prepared, "surgical", seed=1)
    assert masked.truth is not None and np.array_equal(masked.truth, prepared.aligned.image)
    assert masked.mask.any() and masked.mask.shape == (256, 256)
    assert masked.mask_source.startswith("synthetic:")
    assert not np.array_equal(masked.aligned.image, prepared.aligned.image)
    assert masked.photo.shape == prepared.photo.shape
    assert not np.array_equal(masked.photo, prepared.photo)  # the mask is drawn into the photo too


def test_every_method_runs_and_is_timed(prepared):
    masked = pipeline.with_synthetic_mask(prepared, "kn95", seed=2)
    results = pipeline.run_methods(masked.aligned.image, masked.mask)
    assert results.errors == {}
    assert list(results) == list(METHODS)
    for image, seconds in results.values():
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert seconds >= 0


def test_missing_weights_become_a_message_per_method(prepared, gan_weights_missing):
    masked = pipeline.with_synthetic_mask(prepared, "cloth", seed=3)
    results = pipeline.run_methods(masked.aligned.image, masked.mask, [*METHODS, "nope"])
    assert list(results) == [k for k, s in METHODS.items() if not s.trainable]
    assert set(results.errors) == {k for k, s in METHODS.items() if s.trainable} | {"nope"}
    assert "safetensors" in results.errors["pix2pix"]


def test_paste_result_changes_only_the_face(prepared):
    masked = pipeline.with_synthetic_mask(prepared, "n95", seed=4)
    white = np.full((256, 256, 3), 255, np.uint8)
    out = pipeline.paste_result(masked, white)
    assert out.shape == masked.photo.shape and out.dtype == np.uint8
    assert np.array_equal(out[:40, :40], masked.photo[:40, :40])  # far corner untouched
    assert (out != masked.photo).any()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _expected_aligned(mask: np.ndarray, prepared: pipeline.Prepared) -> np.ndarray:
    """A photo-coordinates mask warped onto the aligned face by the prepared photo's matrix."""
    warped = cv2.warpAffine(
        mask.astype(np.float32), np.asarray(prepared.aligned.matrix), (256, 256)
    )
    return warped > 0.5


def _lower_face(shape: tuple[int, int], top: int, left: int) -> np.ndarray:
    """A rectangle over the astronaut's mouth and chin, in a crop starting at (top, left)."""
    m = np.zeros(shape, bool)
    m[135 - top : 185 - top, 190 - left : 260 - left] = True
    return m


@pytest.mark.parametrize("width", [256, 257])
def test_given_mask_is_in_photo_coordinates_even_at_256(astronaut, width):
    """A 256x256 photo's mask is the photo's, not the aligned face's (it was taken as aligned)."""
    photo = np.ascontiguousarray(astronaut[20:276, 100 : 100 + width])
    mask = _lower_face(photo.shape[:2], 20, 100)
    p = pipeline.prepare(photo, mask=mask)
    assert p.mask_source == "given" and p.mask.shape == (256, 256)
    assert _iou(p.mask, _expected_aligned(mask, p)) > 0.95
    assert not any("scaled" in m for m in p.messages)


def test_given_mask_of_another_size_is_scaled_to_the_photo_and_said(astronaut):
    mask = _lower_face(astronaut.shape[:2], 0, 0)
    half = cv2.resize(mask.astype(np.uint8) * 255, (256, 256), interpolation=cv2.INTER_NEAREST)
    p = pipeline.prepare(astronaut, mask=half)
    assert _iou(p.mask, _expected_aligned(mask, p)) > 0.9
    assert any("256×256" in m and "scaled to the photo" in m for m in p.messages)


@pytest.mark.parametrize(
    "mask, words",
    [
        (np.zeros((100, 300), np.uint8), "the photo itself"),  # other proportions
        (np.zeros((512, 512), np.uint8), "marks nothing"),
        (np.full((512, 512), 255, np.uint8), "100.0% of the photo"),
        (np.pad(np.full((10, 10), 255, np.uint8), ((0, 502), (0, 502))), "does not touch the face"),
    ],
)
def test_unusable_given_masks_are_refused_with_a_reason(astronaut, mask, words):
    with pytest.raises(pipeline.InputError) as err:
        pipeline.prepare(astronaut, mask=mask)
    assert err.value.reason == "bad_mask" and words in str(err.value)


def test_mask_drawn_on_a_transparent_layer(tmp_path, astronaut):
    """White shape on a transparent layer: the shape is the hole (it was 98.5% of the photo)."""
    from PIL import Image

    shape = _lower_face(astronaut.shape[:2], 0, 0)
    rgba = np.zeros((*shape.shape, 4), np.uint8)
    rgba[shape] = 255
    Image.fromarray(rgba).save(tmp_path / "mask.png")
    p = pipeline.prepare(astronaut, mask=tmp_path / "mask.png")
    assert _iou(p.mask, _expected_aligned(shape, p)) > 0.95
    assert p.mask.mean() < 0.2


def test_unreadable_mask_file_is_refused_without_its_path(tmp_path, astronaut):
    path = tmp_path / "mask.png"
    path.write_text("not a picture")
    with pytest.raises(pipeline.InputError) as err:
        pipeline.prepare(astronaut, mask=path)
    assert err.value.reason == "bad_mask" and str(tmp_path) not in str(err.value)


def test_missing_segmenter_asks_for_a_painted_mask(astronaut, monkeypatch):
    from model.checkpoint import WeightsError

    def missing(untrained: bool):
        raise WeightsError("model/weights/segmenter.safetensors not found")

    monkeypatch.setattr(pipeline, "_segmenter", missing)
    p = pipeline.prepare(astronaut)
    assert p.mask_source == "none" and not p.mask.any()
    assert any("paint" in m for m in p.messages)


def test_non_image_file_is_refused_with_a_message(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a photo")
    with pytest.raises(pipeline.InputError) as err:
        pipeline.prepare(path)
    assert err.value.reason == "not_image"
    assert str(tmp_path) not in str(err.value)  # no server paths in messages
    with pytest.raises(pipeline.InputError):
        pipeline.prepare(b"\x00\x01 not an image")


def test_no_face_is_refused():
    with pytest.raises(pipeline.InputError) as err:
        pipeline.prepare(np.full((300, 400, 3), 128, np.uint8))
    assert err.value.reason == "no_face" and "No face" in str(err.value)


def test_tiny_face_is_refused(astronaut):
    small = cv2.resize(astronaut, (96, 96), interpolation=cv2.INTER_AREA)
    with pytest.raises(pipeline.InputError) as err:
        pipeline.prepare(small)
    assert err.value.reason in ("too_small", "no_face")


def _pasted_identity_error(p: pipeline.Prepared) -> float:
    """Mean error of pasting the aligned face itself back: small when the matrix is right."""
    back = pipeline.paste_result(p, p.aligned.image)
    region = (
        cv2.warpAffine(
            np.ones((256, 256), np.float32),
            np.asarray(p.aligned.matrix),
            (p.photo.shape[1], p.photo.shape[0]),
            flags=cv2.WARP_INVERSE_MAP,
        )
        > 0.99
    )
    return float(np.abs(back.astype(int) - p.photo.astype(int))[region].mean())


def test_large_photo_results_at_its_own_size(astronaut):
    huge = cv2.resize(astronaut, (2600, 2600), interpolation=cv2.INTER_LINEAR)
    p = pipeline.prepare(huge)
    assert p.photo.shape == (2600, 2600, 3) and p.aligned.source_shape == (2600, 2600)
    assert not any("large" in m for m in p.messages)
    assert pipeline.paste_result(p, p.aligned.image).shape == (2600, 2600, 3)
    assert _pasted_identity_error(p) < 4


def test_wide_photo_results_at_its_own_size(astronaut):
    """A 2400x520 photo came back 2048x444."""
    wide = np.full((520, 2400, 3), 200, np.uint8)
    wide[4:516, 1500:2012] = astronaut
    p = pipeline.prepare(wide, mask=_lower_face((520, 2400), -4, -1500))
    assert p.photo.shape == (520, 2400, 3)
    out = pipeline.paste_result(p, np.zeros((256, 256, 3), np.uint8))
    assert out.shape == (520, 2400, 3)
    assert np.array_equal(out[:, :1400], wide[:, :1400])  # only around the face changes
    changed = (out != wide).any(axis=2)
    ys, xs = np.nonzero(changed)
    # The mask's rectangle (x 1690-1760, y 139-189) plus the paste margin and feather.
    assert 1670 <= xs.min() and xs.max() <= 1780 and 119 <= ys.min() and ys.max() <= 209
    assert _pasted_identity_error(p) < 4


@pytest.fixture(scope="module")
def phone_108mp(astronaut) -> bytes:
    """A 108-megapixel phone JPEG (12000x9000) with the astronaut's face large in it."""
    import io

    from PIL import Image

    canvas = Image.new("RGB", (12000, 9000), (200, 200, 200))
    canvas.paste(Image.fromarray(astronaut).resize((4000, 4000)), (5000, 2500))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def test_108mp_jpeg_is_read_at_half_size_and_the_person_told(phone_108mp, capfd):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = pipeline.prepare(phone_108mp)
    assert p.photo.shape == (4500, 6000, 3)
    assert any("12000×9000" in m and "6000×4500" in m for m in p.messages)
    assert pipeline.paste_result(p, p.aligned.image).shape == (4500, 6000, 3)
    assert not [w for w in caught if "DecompressionBomb" in type(w.message).__name__]
    assert "DecompressionBomb" not in capfd.readouterr().err


def test_png_over_the_pixel_limit_is_refused_with_a_message(capfd):
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 12000, 9000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
    png += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\x00" * 16)  # the header is all that is read before refusing
    png += (
        struct.pack(">I", len(idat))
        + b"IDAT"
        + idat
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    )
    with pytest.raises(pipeline.InputError) as err:
        pipeline.prepare(png)
    assert err.value.reason == "too_large" and "12000x9000" in str(err.value)
    assert capfd.readouterr().err == ""


def test_several_faces_use_the_largest_and_say_so(astronaut):
    half = cv2.resize(astronaut, (384, 384), interpolation=cv2.INTER_AREA)
    pad = np.full((512, 384, 3), 255, np.uint8)
    pad[:384] = half
    group = np.ascontiguousarray(np.hstack([astronaut, pad]))
    p = pipeline.prepare(group)
    assert p.aligned.n_other_faces >= 1
    assert any("faces" in m and "largest" in m for m in p.messages)
    m = np.asarray(p.aligned.matrix)  # photo -> aligned; the aligned centre lies in the left half
    centre = np.linalg.solve(m[:, :2], np.array([128.0, 128.0]) - m[:, 2])
    assert centre[0] < astronaut.shape[1]


def test_masked_closeup_is_found_behind_the_mask(prepared):
    """dlib's HOG misses this masked face; CenterFace finds it and the eyes land on the template."""
    from model.faces import TEMPLATE_EYE_LEFT, TEMPLATE_EYE_RIGHT

    masked = pipeline.with_synthetic_mask(prepared, "surgical", seed=0).photo
    closeup = np.ascontiguousarray(masked[10:250, 100:340])
    p = pipeline.prepare(closeup)
    assert p.aligned.image.shape == (256, 256, 3)
    assert not any("close-up" in m for m in p.messages)
    eyes = np.stack([p.aligned.landmarks[36:42].mean(0), p.aligned.landmarks[42:48].mean(0)])
    expected = np.array([TEMPLATE_EYE_LEFT, TEMPLATE_EYE_RIGHT]) * 256
    assert np.abs(eyes - expected).max() < 6


@pytest.mark.parametrize("name", ["coffee", "rocket", "retina", "noise"])
def test_a_photo_without_a_face_is_not_taken_for_a_closeup(name):
    """These passed the close-up guess's texture and mask checks, and a face was painted on a
    saucer; CenterFace's score on the guess turns them away."""
    import skimage.data

    if name == "noise":
        photo = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    else:
        photo = np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])
    with pytest.raises(pipeline.InputError) as err:
        pipeline.prepare(photo)
    assert err.value.reason == "no_face" and "No face was found" in str(err.value)


def test_closeup_guess_aligns_a_face_no_detector_sees(prepared):
    masked = pipeline.with_synthetic_mask(prepared, "surgical", seed=0).photo
    closeup = np.ascontiguousarray(masked[10:250, 100:340])
    guessed = pipeline._align_as_closeup(closeup)
    assert guessed is not None and guessed.image.shape == (256, 256, 3)


# --- greyscale photos (issue 14, item 9) ----------------------------------------------------------


def _grey_variants(astronaut: np.ndarray) -> dict[str, object]:
    import io

    from PIL import Image

    luma = np.asarray(Image.fromarray(astronaut).convert("L"))

    def encoded(im, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    return {
        "L png": encoded(Image.fromarray(luma), "PNG"),
        "16-bit png": encoded(Image.fromarray(luma.astype(np.uint16) * 257), "PNG"),
        "RGB, equal channels": np.repeat(luma[:, :, None], 3, axis=2),
        "RGB jpeg of a grey photo": encoded(
            Image.fromarray(np.repeat(luma[:, :, None], 3, axis=2)), "JPEG", quality=90
        ),
    }


def _is_grey(image: np.ndarray) -> bool:
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


@pytest.mark.parametrize(
    "kind", ["L png", "16-bit png", "RGB, equal channels", "RGB jpeg of a grey photo"]
)
def test_grey_photo_gets_grey_results_from_every_method(astronaut, kind):
    photo = _grey_variants(astronaut)[kind]
    p = pipeline.prepare(photo, mask=_lower_face((512, 512), 0, 0))
    results = pipeline.run_methods(p.aligned.image, p.mask)
    assert results.errors == {} and list(results) == list(METHODS)
    for key, (image, _) in results.items():
        assert _is_grey(image), key
        pasted = pipeline.paste_result(p, image)
        assert np.abs(pasted.astype(int) - pasted.mean(axis=2, keepdims=True)).max() <= 6, key


def test_grey_photo_with_a_synthetic_mask_stays_grey(astronaut):
    grey = _grey_variants(astronaut)["RGB, equal channels"]
    masked = pipeline.with_synthetic_mask(pipeline.prepare(grey), "cloth", seed=5)
    assert _is_grey(masked.aligned.image) and _is_grey(masked.photo)
    results = pipeline.run_methods(masked.aligned.image, masked.mask, ["telea", "unmask"])
    assert all(_is_grey(image) for image, _ in results.values())


def test_colour_photo_keeps_its_colour(prepared):
    from model.imageio import is_greyscale

    masked = pipeline.with_synthetic_mask(prepared, "surgical", seed=6)
    results = pipeline.run_methods(masked.aligned.image, masked.mask, ["telea", "unmask"])
    assert not any(_is_grey(image) for image, _ in results.values())
    assert not is_greyscale(results["telea"][0])


def test_the_demo_gets_grey_results_for_a_grey_photo(astronaut):
    """The demo's service runs the methods through the pipeline: no separate greyscale path."""
    from demo import service

    view = service.prepare_upload(_grey_variants(astronaut)["L png"])
    view = service.add_synthetic_mask(view.visit, "surgical", seed=0)
    view = service.run(view.visit, None, ["telea", "pix2pix", "unmask"])
    assert set(view.visit.results) == {"telea", "pix2pix", "unmask"}
    assert all(_is_grey(image) for image, _ in view.visit.results.values())
    assert view.photo is not None and _is_grey(view.photo)


def test_results_show_the_fill_where_the_photo_ends(astronaut):
    """A face cut by the photo's bottom edge: the hole runs past the edge, every method paints
    there, and every result comes back with those pixels set to the flat fill again (no paint
    outside the photo in the demo's tiles or `unmask inpaint`'s *_face.png)."""
    from model.faces import OUTSIDE_FILL

    p = pipeline.with_synthetic_mask(pipeline.prepare(astronaut[:170]), "surgical", seed=3)
    outside = ~p.aligned.inside
    assert (outside & p.mask).sum() > 300  # the hole does run past the photo's edge
    results = pipeline.run_methods(
        p.aligned.image, p.mask, ["telea", "unmask"], inside=p.aligned.inside
    )
    assert results.errors == {} and list(results) == ["telea", "unmask"]
    for key, (image, _) in results.items():
        assert (image[outside] == OUTSIDE_FILL).all(), key
    # Inside the photo the hole is painted (Telea; the untrained networks here may paint grey).
    assert not (results["telea"][0][p.mask & ~outside] == OUTSIDE_FILL).all()
