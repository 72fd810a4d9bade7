"""Models shared by the demo's concurrent workers: the same answers from 4 threads as from one.

Issue 14: one cached CenterFace `cv2.dnn.Net` shared by two visitors failed 158 of 160 calls
(`cv2.error ... forwardGraph`), returned wrong boxes, then segfaulted the server; dlib's HOG
detector segfaults the same way. The photos here are masked faces dlib's HOG misses, so every
upload goes through CenterFace.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image

from demo import service
from model import centerface, faces, pipeline

THREADS = 4
CALLS = 48


@pytest.fixture(autouse=True)
def untrained(monkeypatch):
    monkeypatch.setenv(pipeline.UNTRAINED_ENV, "1")


def _turned(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def masked_photos() -> list[np.ndarray]:
    """The demo's masked astronaut examples, upright and turned 20 degrees, of varied sizes."""
    if not centerface.available():
        pytest.skip(f"CenterFace is not installed ({centerface.INSTALL_HINT})")
    photos = []
    for i, (caption, path) in enumerate(service.examples()):
        if "no mask" in caption:
            continue
        photo = np.asarray(Image.open(path).convert("RGB"))
        photos.append(photo)
        side = 320 + 96 * i  # different blob shapes: a shared net would mix them up
        photos.append(np.ascontiguousarray(cv2.resize(_turned(photo, 20), (side, side))))
    for photo in photos:  # they reach CenterFace: HOG alone finds none of them
        assert faces.detect_faces(photo, upsample=0) == []
    return photos


def _in_threads(fn, n_items: int) -> tuple[list, list[BaseException]]:
    """fn(i % n_items) for CALLS calls on THREADS threads: (results in call order, errors)."""
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(fn, i % n_items) for i in range(CALLS)]
    results, errors = [], []
    for future in futures:
        try:
            results.append(future.result())
        except BaseException as err:  # noqa: B036 (every failure counts)
            results.append(None)
            errors.append(err)
    return results, errors


def test_centerface_in_four_threads_equals_one_thread(masked_photos):
    alone = [centerface.detect(photo) for photo in masked_photos]
    assert all(len(boxes) >= 1 for boxes, _, _ in alone)
    results, errors = _in_threads(
        lambda i: (i, centerface.detect(masked_photos[i])), len(masked_photos)
    )
    assert errors == []
    for i, got in results:
        for a, b in zip(got, alone[i], strict=True):
            np.testing.assert_array_equal(a, b)
    assert 1 <= centerface.NETS.created <= THREADS + 1  # each concurrent caller had its own net


def test_face_finding_in_four_threads_equals_one_thread(masked_photos):
    """The demo's upload step (HOG, CenterFace, dlib landmarks, alignment) from 4 threads."""
    alone = [faces.find_and_align(photo) for photo in masked_photos]
    results, errors = _in_threads(
        lambda i: (i, faces.find_and_align(masked_photos[i])), len(masked_photos)
    )
    assert errors == []
    for i, got in results:
        np.testing.assert_array_equal(got.landmarks, alone[i].landmarks)
        np.testing.assert_array_equal(got.image, alone[i].image)


def test_hog_detector_in_four_threads_equals_one_thread(astronaut):
    """dlib's HOG detector (which runs without the GIL) on photos where it finds the face."""
    photos = [
        astronaut,
        np.ascontiguousarray(astronaut[:, ::-1]),
        cv2.resize(astronaut, (700, 700)),
    ]

    def boxes(i: int):
        return i, [(f.box, f.score) for f in faces.detect_faces(photos[i], upsample=1)]

    alone = [boxes(i)[1] for i in range(len(photos))]
    assert all(alone)
    results, errors = _in_threads(boxes, len(photos))
    assert errors == []
    assert all(got == alone[i] for i, got in results)


def test_prepare_in_four_threads_equals_one_thread(masked_photos):
    """The whole upload step: the face above plus the (untrained, shared) torch segmenter."""
    alone = [pipeline.prepare(photo) for photo in masked_photos[:4]]
    results, errors = _in_threads(lambda i: (i, pipeline.prepare(masked_photos[i])), 4)
    assert errors == []
    for i, got in results:
        np.testing.assert_array_equal(got.aligned.image, alone[i].aligned.image)
        np.testing.assert_array_equal(got.mask, alone[i].mask)
