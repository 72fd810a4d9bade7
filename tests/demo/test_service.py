"""demo.service without a server: examples, upload, brush corrections, runs, zip, About."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from demo import service
from model import pipeline
from model.methods import METHODS


@pytest.fixture(autouse=True)
def untrained(monkeypatch):
    monkeypatch.setenv(pipeline.UNTRAINED_ENV, "1")


@pytest.fixture(scope="module")
def visit(astronaut) -> service.Visit:
    """The astronaut, uploaded, then given a synthetic cloth mask (so the truth is known)."""
    view = service.prepare_upload(astronaut)
    assert view.visit.prepared is not None, view.status
    return service.add_synthetic_mask(view.visit, "cloth", seed=5).visit


def test_examples_are_made_from_the_astronaut_with_every_style():
    from model.masks import STYLES

    examples = service.examples()
    assert len(examples) == len(STYLES) + 1
    images = [np.asarray(Image.open(path)) for _, path in examples]
    assert images[-1].shape == (512, 512, 3)  # the whole photo, no mask
    closeups = images[:-1]
    assert all(im.shape == (service.EXAMPLE_SIZE, service.EXAMPLE_SIZE, 3) for im in closeups)
    assert all(
        (a != b).any() for a, b in zip(closeups, closeups[1:], strict=False)
    )  # styles differ
    assert all("shared" not in path for _, path in examples)


def test_masked_examples_are_found_and_aligned():
    for caption, path in service.examples()[:-1]:
        view = service.prepare_upload(path)
        assert view.visit.prepared is not None, (caption, view.status)


def test_upload_shows_the_face_with_the_mask_overlay(astronaut):
    view = service.prepare_upload(astronaut)
    assert view.visit.prepared is not None
    background = view.editor["background"]
    assert background.shape == (service.EDITOR_SIZE, service.EDITOR_SIZE, 3)
    assert view.editor["layers"] == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"%PDF-1.4 not an image", "not an image"),
        (np.full((240, 320, 3), 200, np.uint8), "No face"),
        (None, ""),
        (service.Unreadable("UnidentifiedImageError"), "not an image we can read"),
    ],
)
def test_bad_uploads_become_messages(data, expected):
    view = service.prepare_upload(data)
    assert view.visit.prepared is None and view.editor is None
    assert expected in view.status
    assert "Traceback" not in view.status


def test_red_strokes_add_and_blue_strokes_erase():
    mask = np.zeros((256, 256), bool)
    mask[100:150, 100:150] = True
    layer = np.zeros((512, 512, 4), np.uint8)  # the editor's canvas is 512²
    layer[0:40, 0:40] = (255, 42, 42, 255)  # add top-left
    layer[200:300, 200:300] = (42, 157, 255, 255)  # erase the middle of the mask
    out = service.apply_strokes(mask, {"background": None, "layers": [layer], "composite": None})
    assert out[:20, :20].all()
    assert not out[100:150, 100:150].any()
    assert out.sum() == 20 * 20
    assert np.array_equal(service.apply_strokes(mask, None), mask)


def test_run_shows_truth_and_one_result_per_method(visit):
    view = service.run(visit, None, list(METHODS))
    captions = [caption for _, caption in view.gallery]
    assert captions[:2] == ["Input", "Ground truth"]
    for key, spec in METHODS.items():
        assert sum(c.startswith(spec.label + " · ") for c in captions) == 1, key
        assert key in view.timings or spec.label in view.timings
    assert view.photo.shape == visit.prepared.photo.shape
    assert view.chosen == "unmask"
    with zipfile.ZipFile(service.download(view.visit)) as zf:
        names = set(zf.namelist())
    assert {"input_face.png", "mask.png", "ground_truth_face.png", "timings.csv"} <= names
    assert {f"{k}_face.png" for k in METHODS} | {f"{k}_photo.png" for k in METHODS} <= names
    assert service.key_at(view.visit, 0) is None and service.key_at(view.visit, 1) is None
    assert service.key_at(view.visit, 2) == next(iter(METHODS))
    pasted = service.paste(view.visit, "telea")
    assert pasted.shape == visit.prepared.photo.shape


def test_run_a_chosen_subset(visit):
    view = service.run(visit, None, ["telea", "pix2pix_mask"], chosen="telea")
    assert list(view.visit.results) == ["telea", "pix2pix_mask"]
    assert view.chosen == "telea"


def test_missing_weights_are_explained_per_method(visit, gan_weights_missing):
    view = service.run(visit, None, None)
    assert list(view.visit.results) == [k for k, s in METHODS.items() if not s.trainable]
    for spec in METHODS.values():
        if spec.trainable:
            assert f"{spec.label}: not available" in view.status


def test_empty_mask_asks_for_a_painted_region(visit):
    erase_all = np.zeros((256, 256, 4), np.uint8)
    erase_all[...] = (42, 157, 255, 255)
    view = service.run(visit, {"layers": [erase_all]}, None)
    assert "empty" in view.status and view.gallery == []


def test_correct_mask_redraws_the_overlay(visit):
    layer = np.zeros((256, 256, 4), np.uint8)
    layer[:10] = (255, 42, 42, 255)
    view = service.correct_mask(visit, {"layers": [layer]})
    assert view.visit.prepared.mask[:10].all()
    assert view.editor["layers"] == []


def test_steps_before_an_upload_ask_for_one():
    assert service.download(service.Visit()) is None
    for view in (
        service.run(service.Visit(), None, None),
        service.add_synthetic_mask(service.Visit(), "n95"),
        service.correct_mask(service.Visit(), None),
    ):
        assert "Upload a photo" in view.status


def test_a_negative_seed_gets_a_message(visit):
    view = service.add_synthetic_mask(visit, "cloth", seed=-5)
    assert "seed must be a whole number from 0" in view.status
    assert view.visit is visit


def test_a_bare_face_is_answered_no_mask_and_left_unchanged(astronaut, monkeypatch):
    """With the shipped segmenter, the astronaut (no face mask) is 'no mask': the upload says so,
    Run says there is nothing to remove, and no method repaints her mouth."""
    monkeypatch.delenv(pipeline.UNTRAINED_ENV, raising=False)
    if pipeline.get_segmenter() is None:
        pytest.skip(f"no shipped segmenter: {pipeline.segmenter_problem()}")
    view = service.prepare_upload(astronaut)
    assert view.visit.prepared.mask_source == "none" and not view.visit.prepared.mask.any()
    assert "No face mask was found" in view.status and "left unchanged" in view.status
    ran = service.run(view.visit, None, None)
    assert "nothing to remove" in ran.status and "⚠" not in ran.status
    assert not ran.visit.results


def test_gallery_files_are_new_paths_for_every_call():
    """Two visitors shown the same picture get two files: Gradio's cache of an array rewrites one
    shared file in place, and a concurrent download then read it truncated (a flaky CI run)."""
    image = np.full((8, 8, 3), 77, np.uint8)
    first, second = service.as_files([(image, "Input")]), service.as_files([(image, "Input")])
    assert first[0][1] == second[0][1] == "Input"
    assert first[0][0] != second[0][0]
    assert (np.asarray(Image.open(first[0][0])) == image).all()
    assert service.as_file(None) is None


def test_unticking_every_method_asks_for_one(visit):
    ran = service.run(visit, None, [])
    assert "Choose at least one method" in ran.status and not ran.visit.results


def test_painting_on_a_bare_face_drops_the_no_mask_note(astronaut, monkeypatch):
    monkeypatch.delenv(pipeline.UNTRAINED_ENV, raising=False)
    if pipeline.get_segmenter() is None:
        pytest.skip(f"no shipped segmenter: {pipeline.segmenter_problem()}")
    view = service.prepare_upload(astronaut)
    assert view.status.count("No face mask was found") == 1  # the summary, not twice
    painted = pipeline.with_mask(view.visit.prepared, np.zeros((256, 256), bool))
    hole = np.zeros((256, 256), bool)
    hole[170:220, 90:170] = True
    painted = pipeline.with_mask(painted, hole)
    ran = service.run(service.Visit(painted), None, ["telea"])
    assert ran.visit.results and "No face mask was found" not in ran.status
    assert "--mask" not in ran.status and "--face" not in ran.status


def test_in_a_group_photo_the_masked_face_is_chosen(astronaut, monkeypatch):
    """A bare astronaut beside a smaller masked one: HOG finds only the bare face (CenterFace the
    masked one too); the masked face is the one to unmask; the note names the page's Face box,
    and the box picks the largest face on request."""
    import cv2

    monkeypatch.delenv(pipeline.UNTRAINED_ENV, raising=False)
    if pipeline.get_segmenter() is None:
        pytest.skip(f"no shipped segmenter: {pipeline.segmenter_problem()}")
    masked = pipeline.with_synthetic_mask(pipeline.prepare(astronaut), "surgical", seed=3).photo
    left = cv2.resize(astronaut, (640, 640), interpolation=cv2.INTER_AREA)
    right = np.full((640, 512, 3), 255, np.uint8)
    right[:512] = masked
    group = np.ascontiguousarray(np.hstack([left, right]))
    view = service.prepare_upload(group)
    prepared = view.visit.prepared
    assert prepared.aligned.face_index == 2 and prepared.mask_source == "segmenter"
    assert "the largest one wearing a mask" in view.status and "'Face' box" in view.status
    largest = service.prepare_upload(group, face=1).visit.prepared
    assert largest.aligned.face_index == 1 and largest.mask_source == "none"
    assert "Face is a whole number from 0" in service.prepare_upload(group, face=0.5).status
    assert service.prepare_upload(group, face=0).visit.prepared.aligned.face_index == 2


def test_a_very_large_photo_is_shrunk_for_the_demo(astronaut):
    import cv2

    big = cv2.resize(astronaut, (3000, 3000), interpolation=cv2.INTER_LINEAR)
    view = service.prepare_upload(big)
    assert view.visit.prepared.photo.shape[:2] == (service.DEMO_MAX_SIDE, service.DEMO_MAX_SIDE)
    assert "was shrunk to 2048×2048 px for the demo" in view.status


def test_an_undecodable_upload_is_named_in_plain_words():
    view = service.prepare_upload(service.Unreadable("DecompressionBombError"))
    assert "too many pixels" in view.status and "DecompressionBombError" not in view.status


def test_a_step_after_a_refused_upload_says_why():
    refused = service.prepare_upload(b"not a photo at all")
    assert refused.visit.prepared is None and "⚠" in refused.status
    ran = service.run(refused.visit, None, None)
    assert "The last upload could not be used" in ran.status and "Upload another" in ran.status
