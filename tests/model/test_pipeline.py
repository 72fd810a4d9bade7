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
    assert prepared.mask_source == "segmenter"
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
    assert list(results) == ["telea"]
    assert set(results.errors) == {k for k, s in METHODS.items() if s.trainable} | {"nope"}
    assert "safetensors" in results.errors["pix2pix"]


def test_paste_result_changes_only_the_face(prepared):
    masked = pipeline.with_synthetic_mask(prepared, "n95", seed=4)
    white = np.full((256, 256, 3), 255, np.uint8)
    out = pipeline.paste_result(masked, white)
    assert out.shape == masked.photo.shape and out.dtype == np.uint8
    assert np.array_equal(out[:40, :40], masked.photo[:40, :40])  # far corner untouched
    assert (out != masked.photo).any()


def test_given_mask_in_aligned_or_photo_coordinates(astronaut):
    square = np.zeros((256, 256), np.uint8)
    square[150:220, 70:190] = 255
    p = pipeline.prepare(astronaut, mask=square)
    assert p.mask_source == "given" and np.array_equal(p.mask, square > 0)
    full = np.full(astronaut.shape[:2], 255, np.uint8)
    assert pipeline.prepare(astronaut, mask=full).mask.all()
    with pytest.raises(pipeline.InputError) as err:
        pipeline.prepare(astronaut, mask=np.zeros((100, 300), np.uint8))
    assert err.value.reason == "bad_mask"


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


def test_huge_photo_is_downscaled_and_the_visitor_told(astronaut):
    huge = cv2.resize(astronaut, (2600, 2600), interpolation=cv2.INTER_LINEAR)
    p = pipeline.prepare(huge)
    assert max(p.photo.shape[:2]) == pipeline.MAX_SIDE
    assert any("downscaled" in m for m in p.messages)


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


def test_closeup_guess_aligns_a_face_no_detector_sees(prepared):
    masked = pipeline.with_synthetic_mask(prepared, "surgical", seed=0).photo
    closeup = np.ascontiguousarray(masked[10:250, 100:340])
    guessed = pipeline._align_as_closeup(closeup)
    assert guessed is not None and guessed.image.shape == (256, 256, 3)
