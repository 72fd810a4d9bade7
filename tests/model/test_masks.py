"""Masks on the aligned astronaut: every procedural style and every MaskTheFace template covers
the nose tip and the mouth and none of the eyes, exactly where its seg says, per seed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.faces import find_and_align, transform_points
from model.masks import STYLES, apply_mask, choose_variant, load_templates, six_points
from tests.conftest import shared_or_skip


@pytest.fixture(scope="module")
def face(astronaut):
    a = find_and_align(astronaut)
    return a.image, a.landmarks


@pytest.fixture(scope="module")
def templates():
    return load_templates(shared_or_skip("masktheface"))


def _rolled(face, degrees: float):
    """The aligned face and its landmarks turned in the image plane (a head tilted sideways)."""
    image, lm = face
    m = cv2.getRotationMatrix2D((128, 128), degrees, 1.0)
    turned = cv2.warpAffine(image, m, (256, 256), borderMode=cv2.BORDER_REFLECT)
    return turned, transform_points(lm, m)


def _yawed(face, shift: float):
    """Landmarks of a head turned sideways: the nose and mouth moved towards one side."""
    image, lm = face
    lm = lm.copy()
    lm[27:68, 0] += shift
    return image, lm


def assert_covers_mouth_not_eyes(seg: np.ndarray, lm: np.ndarray) -> None:
    pts = np.round(lm).astype(int)
    assert seg[pts[30, 1], pts[30, 0]], "nose tip (30) not covered"
    assert seg[pts[48:68, 1], pts[48:68, 0]].all(), "mouth (48-67) not covered"
    assert not seg[pts[36:48, 1], pts[36:48, 0]].any(), "an eye landmark (36-47) is covered"


def assert_exact(face_img: np.ndarray, masked) -> None:
    assert masked.image.shape == (256, 256, 3) and masked.image.dtype == np.uint8
    assert masked.seg.shape == (256, 256) and masked.seg.dtype == bool
    changed = (masked.image != face_img).any(axis=2)
    assert not changed[~masked.seg].any(), "pixels outside the seg were changed"
    assert changed[masked.seg].mean() > 0.9, "the seg claims pixels the mask did not paint"


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_style_covers_mouth_not_eyes(face, style, seed):
    image, lm = face
    m = apply_mask(image, lm, seed=seed, style=style)
    assert m.style == style and m.seed == seed and m.colour
    assert_covers_mouth_not_eyes(m.seg, lm)
    assert_exact(image, m)
    assert 0.1 < m.seg.mean() < 0.45


@pytest.mark.parametrize("style", STYLES)
def test_style_follows_roll_and_yaw(face, style):
    for image, lm in (_rolled(face, 20), _rolled(face, -20), _yawed(face, 15), _yawed(face, -15)):
        m = apply_mask(image, lm, seed=5, style=style)
        assert_covers_mouth_not_eyes(m.seg, lm)
    # A rolled face gets a rolled mask: the seg's tilt follows the landmarks.
    flat = apply_mask(*face, seed=5, style=style).seg
    tilted = apply_mask(*_rolled(face, 20), seed=5, style=style).seg
    overlap = (
        cv2.warpAffine(
            flat.astype(np.uint8), cv2.getRotationMatrix2D((128, 128), 20, 1.0), (256, 256)
        )
        > 0
    ) & tilted
    assert overlap.sum() / tilted.sum() > 0.9


@pytest.mark.parametrize("style", [*STYLES, None])
def test_same_seed_same_mask_other_seed_other_mask(face, style):
    a = apply_mask(*face, seed=11, style=style)
    b = apply_mask(*face, seed=11, style=style)
    c = apply_mask(*face, seed=12, style=style)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.seg, b.seg)
    assert (a.style, a.colour) == (b.style, b.colour)
    assert not np.array_equal(a.image, c.image)


def test_seed_draws_the_style(face):
    styles = {apply_mask(*face, seed=s).style for s in range(16)}
    assert len(styles) >= 3 and styles <= set(STYLES)


def test_bad_inputs(face):
    with pytest.raises(ValueError):
        apply_mask(*face, seed=0, style="balaclava")
    with pytest.raises(ValueError):
        apply_mask(face[0], face[1][:5], seed=0)
    with pytest.raises(ValueError):
        apply_mask(*face, seed=0, style="template:surgical")  # no templates loaded


def test_six_points_in_order(face):
    p = six_points(face[1])
    a, b, c, d, e, f = p
    assert a[0] < b[0] < c[0] and d[0] < e[0] < f[0]  # left to right
    assert b[1] < e[1] and a[1] < d[1] and c[1] < f[1]  # top to bottom


def test_variant_by_yaw():
    both = {"", "left", "right"}
    assert choose_variant(-30, both) == "left"
    assert choose_variant(30, both) == "right"
    assert choose_variant(3, both) == ""
    assert choose_variant(30, {""}) == ""


@pytest.mark.data
def test_templates_cover_mouth_not_eyes(face, templates):
    image, lm = face
    assert {"surgical", "KN95", "N95", "cloth"} <= set(templates.names)
    assert len(templates.textures) > 0
    for name in templates.names:
        for seed in (0, 1):
            m = apply_mask(image, lm, seed=seed, style=f"template:{name}", templates=templates)
            assert m.style == f"template:{name}"
            assert_covers_mouth_not_eyes(m.seg, lm)
            assert_exact(image, m)
        a = apply_mask(image, lm, seed=3, style=f"template:{name}", templates=templates)
        b = apply_mask(image, lm, seed=3, style=f"template:{name}", templates=templates)
        c = apply_mask(image, lm, seed=4, style=f"template:{name}", templates=templates)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.seg, b.seg)
        assert not np.array_equal(a.image, c.image)


@pytest.mark.data
def test_templates_turned_heads_and_random_draws(face, templates):
    for shift in (-25, 25):
        image, lm = _yawed(face, shift)
        m = apply_mask(image, lm, seed=0, style="template:surgical", templates=templates)
        assert_covers_mouth_not_eyes(m.seg, lm)
    drawn = {apply_mask(*face, seed=s, templates=templates).style for s in range(24)}
    assert any(s.startswith("template:") for s in drawn) and drawn & set(STYLES)


@pytest.mark.data
def test_cloth_can_use_template_textures(face, templates):
    colours = {
        apply_mask(*face, seed=s, style="cloth", templates=templates).colour for s in range(30)
    }
    assert any(c.startswith("texture ") for c in colours)
