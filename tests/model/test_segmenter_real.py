"""The shipped segmenter and the region rule on generated inputs (the astronaut): bare faces are
left alone ("no mask", in the pipeline and the CLI), hands and glasses are not holes, a mask
pulled under the chin leaves the mouth alone, a mask cut by the photo's edge is a hole to the edge.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model import pipeline
from model.faces import find_and_align
from model.masks import apply_mask
from model.segmenter import NO_MASK_MESSAGE, find_mask_region, load_segmenter
from model.segmenter_data import _glasses, _hand, _pull_down


@pytest.fixture(scope="module")
def segmenter():
    return load_segmenter()


@pytest.fixture(scope="module")
def aligned(astronaut):
    return find_and_align(astronaut)


@pytest.fixture(scope="module")
def masked(aligned):
    return apply_mask(aligned.image, aligned.landmarks, seed=5, style="surgical")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_bare_face_is_no_mask(segmenter, aligned):
    r = find_mask_region(segmenter, aligned.image, aligned.landmarks, aligned.inside)
    assert not r.found and not r.mask.any() and r.message == NO_MASK_MESSAGE


def test_masked_face_is_found(segmenter, aligned, masked):
    r = find_mask_region(segmenter, masked.image, aligned.landmarks, aligned.inside)
    assert r.found and _iou(r.mask, masked.seg) > 0.9


def test_hand_over_the_mouth_is_not_in_the_hole(segmenter, aligned, masked):
    rng = np.random.default_rng(11)
    found_any = False
    for _ in range(3):  # three hands, placed and turned by the seed
        image, hand = _hand(masked.image, aligned.landmarks, rng, aligned.image)
        r = find_mask_region(segmenter, image, aligned.landmarks, aligned.inside)
        if r.found:
            found_any = True
            # Most of the hand stays out of the hole (the fingers' edges may get in).
            assert (r.mask & hand).sum() < 0.25 * hand.sum()
    bare_hand, hand = _hand(
        aligned.image, aligned.landmarks, np.random.default_rng(3), aligned.image
    )
    assert not find_mask_region(segmenter, bare_hand, aligned.landmarks).found  # a hand is no mask
    assert found_any


def test_mask_under_the_chin_leaves_the_mouth(segmenter, aligned, masked):
    import cv2

    rng = np.random.default_rng(0)
    while True:  # the first draw that pulls the mask under the chin
        image, seg, where = _pull_down(
            aligned.image, masked.image, masked.seg, aligned.landmarks, rng
        )
        if where == "under_chin":
            break
    mouth = np.zeros(seg.shape, np.uint8)
    cv2.fillPoly(mouth, [np.round(aligned.landmarks[48:60]).astype(np.int32)], 1)
    r = find_mask_region(segmenter, image, aligned.landmarks, aligned.inside)
    assert (r.mask & (mouth > 0)).sum() < 0.05 * mouth.sum()  # the visible mouth is kept


def test_glasses_above_the_mask_stay_out_of_the_hole(segmenter, aligned, masked):
    image, frames = _glasses(masked.image, aligned.landmarks, np.random.default_rng(2), None)
    r = find_mask_region(segmenter, image, aligned.landmarks, aligned.inside)
    assert r.found and _iou(r.mask, masked.seg) > 0.85
    eyes_bottom = int(aligned.landmarks[36:48, 1].max())
    assert not r.mask[: eyes_bottom - 4].any()  # never into the lenses or above
    # Frames resting on the fabric may go with it; none outside the mask is painted over.
    assert (r.mask & frames & ~masked.seg).sum() < 0.05 * frames.sum()


def test_mask_cut_by_the_photo_edge_is_a_hole_to_the_edge(astronaut):
    prepared = pipeline.prepare(astronaut)
    synthetic = pipeline.with_synthetic_mask(prepared, "surgical", seed=5)
    photo = synthetic.photo
    cut = 170  # rows: the astronaut's mouth is near 160, her chin near 200
    crop = np.ascontiguousarray(photo[:cut])
    p = pipeline.prepare(crop)
    assert p.mask_source == "segmenter", p.messages
    inside = p.aligned.inside
    # The aligned rows just inside the photo's bottom edge, under the mask's middle: in the hole.
    edge_rows = inside & ~np.roll(inside, -3, axis=0)  # inside pixels within 3 px of the edge
    cols = np.nonzero(p.mask.any(0))[0]
    middle = np.zeros_like(inside)
    middle[:, cols[len(cols) // 3] : cols[2 * len(cols) // 3]] = True
    band = edge_rows & middle
    assert band.any() and p.mask[band].mean() > 0.95
    # Pasted back, no band of mask fabric stays along the photo's bottom edge.
    result = pipeline.paste_result(p, p.aligned.image * 0)  # paint the hole black to see it
    x0, x1 = 200, 250
    assert (result[cut - 3 :, x0:x1] < 40).all()


def test_unmasked_astronaut_comes_back_unchanged(astronaut, tmp_path, capsys, monkeypatch):
    from model.cli import main

    monkeypatch.delenv(pipeline.UNTRAINED_ENV, raising=False)
    p = pipeline.prepare(astronaut)
    assert p.mask_source == "none" and not p.mask.any()
    assert any(m == NO_MASK_MESSAGE for m in p.messages)
    src = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(src)
    rc = main(["inpaint", "--input", str(src), "--out", str(tmp_path / "out"), "--method", "telea"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "no face mask was found on 1, written unchanged: astronaut.png" in out
    written = np.asarray(Image.open(tmp_path / "out" / "astronaut" / "telea.png"))
    assert np.array_equal(written, astronaut)


def test_border_fill_finds_a_rotations_corners_and_nothing_in_a_photo(astronaut):
    from model.faces import border_fill

    assert not border_fill(astronaut).any()
    turned = np.asarray(Image.fromarray(astronaut).rotate(35))  # black corners, as an editor's
    filled = ~np.asarray(Image.fromarray(np.full_like(astronaut, 255)).rotate(35)).all(-1)
    found = border_fill(turned)
    assert (found & filled).sum() >= 0.97 * filled.sum()  # the corners
    # Of the photo, only its own near-black pixels that touch them (the dark sky at the corner).
    assert turned[found & ~filled].max() <= 2


def test_tilted_bare_faces_with_black_corners_are_left_alone():
    """UTKFace crops turned by 35 degrees (black corners): the corner under the chin read as a
    black mask for 27 of these 30 faces; counted as outside the photo, 9 still get a region
    (their lips or chin, which the turn itself puts off the training faces' poses)."""
    import io

    from tests.conftest import shared_or_skip

    faces = sorted(shared_or_skip("utkface", "images").glob("*.jpg"))[::300][:30]
    found = 0
    for path in faces:
        buf = io.BytesIO()
        Image.open(path).convert("RGB").rotate(35).save(buf, "PNG")
        found += pipeline.prepare(buf.getvalue()).mask_source == "segmenter"
    assert found <= 10, f"{found} of {len(faces)} bare tilted faces got a mask region"
