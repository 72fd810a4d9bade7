"""Segmenter evaluation: the IoU arithmetic, and `unmask eval --segmenter` end to end on a built set."""

import numpy as np

from model.segmenter_eval import iou


def test_iou_by_hand():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 px
    b[2:6, 0:5] = True  # 20 px, 10 shared
    assert iou(a, b) == 10 / 30
    assert iou(a, a) == 1.0
    assert iou(a, ~a) == 0.0
    assert iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0


def test_false_positive_summary_counts_the_pipeline_answer():
    from model.segmenter_eval import _fp_summary

    # Three faces: clean; a 0.5 % region answered "no mask"; a 5 % region kept as a mask.
    s = _fp_summary([0.0, 0.005, 0.05], [0.0, 0.006, 0.05], [False, False, True])
    assert s["n"] == 3
    assert s["share_no_mask"] == 2 / 3
    assert s["share_raw_under_1pct"] == 2 / 3
    assert abs(s["final_area_mean"] - 0.05 / 3) < 1e-12  # "no mask" faces count as area 0
    assert s["share_final_under_1pct"] == 2 / 3


def test_only_labelled_expression_faces_are_used(tmp_path):
    from PIL import Image

    from model.segmenter_eval import expressions_fp

    for name in ("0101a02.jpg", "0111b01.jpg", "0101002.jpg", "notes.txt"):  # 5th: a, b, 0
        if name.endswith(".jpg"):
            Image.new("RGB", (64, 64), "grey").save(tmp_path / name)
        else:
            (tmp_path / name).write_text("x")
    r = expressions_fp(None, tmp_path)  # blank images: no face, nothing for the segmenter
    assert r["files"] == 2 and r["not_aligned"] == 2 and r["n"] == 0


def test_iou_counts_only_the_pixels_inside_the_photo():
    from model.faces import OUTSIDE_FILL
    from model.segmenter_eval import iou_in_photo

    face = np.full((64, 64, 3), 90, np.uint8)
    face[48:] = OUTSIDE_FILL  # the photo ends at row 48
    truth = np.zeros((64, 64), bool)
    truth[32:] = True  # the synthetic mask is drawn across the edge
    pred = np.zeros((64, 64), bool)
    pred[32:48] = True  # the segmenter stops where the photo does
    assert iou(pred, truth) == 0.5
    assert iou_in_photo(pred, truth, face) == 1.0
    pred[40:48, :32] = False
    assert iou_in_photo(pred, truth, face) == 0.75
