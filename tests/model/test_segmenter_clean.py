"""clean_mask: one solid region below the eyes, whatever the raw prediction left."""

import numpy as np

from model.segmenter import clean_mask


def _landmarks_with_eyes_at(y: float) -> np.ndarray:
    lm = np.zeros((68, 2), np.float32)
    lm[36:48, 1] = y
    return lm


def test_keeps_the_largest_piece_fills_holes_and_clears_the_eyes():
    raw = np.zeros((64, 64), bool)
    raw[30:60, 10:54] = True  # the mask
    raw[40:45, 20:25] = False  # a hole (printed fabric the segmenter missed)
    raw[2:6, 2:6] = True  # a stray blob on the hair
    raw[32:34, 58:62] = True  # a small blob beside the mask
    cleaned = clean_mask(raw)
    expected = np.zeros_like(raw)
    expected[30:60, 10:54] = True
    np.testing.assert_array_equal(cleaned, expected)

    # Given landmarks, nothing at or above the lower eyelids (+2 px: rows 0-25 here) survives.
    raw2 = expected.copy()
    raw2[20:30, 10:54] = True
    cleaned = clean_mask(raw2, _landmarks_with_eyes_at(24.0))
    assert not cleaned[:26].any() and cleaned[26:60, 10:54].all()


def test_empty_mask_stays_empty():
    assert not clean_mask(np.zeros((32, 32), bool)).any()
