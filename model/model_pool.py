"""Models that must not be used by two threads at once, lent out one caller at a time.

Some loaded models keep per-call scratch state inside themselves and run without Python's GIL:
an OpenCV `cv2.dnn.Net` (its layer buffers) and dlib's HOG detector (its image pyramid). Shared
by the demo's concurrent workers they give wrong boxes, `cv2.error`s and segfaults. A pool lends
each caller its own instance and takes it back afterwards: it grows to the number of callers
that ever overlapped (two for the demo's uploads) and is reused after that, whichever worker
thread asks (Gradio's worker threads come and go, so a per-thread copy would be rebuilt often).

Read-only models that are safe to share (torch modules in eval mode, dlib's shape predictor,
dlib's CNN detectors, which hold the GIL) stay plain cached objects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class ModelPool(Generic[T]):
    """Instances made by `make()` on demand; `with pool.borrow() as model:` lends one."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._idle: list[T] = []
        self._lock = threading.Lock()
        self.created = 0  # how many instances exist (for tests and benchmarks)

    @contextmanager
    def borrow(self) -> Iterator[T]:
        with self._lock:
            model = self._idle.pop() if self._idle else None
            if model is None:
                self.created += 1
        if model is None:
            try:
                model = self._make()  # outside the lock: loading may take a while
            except BaseException:
                with self._lock:
                    self.created -= 1
                raise
        try:
            yield model
        finally:
            with self._lock:
                self._idle.append(model)
