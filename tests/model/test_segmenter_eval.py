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
