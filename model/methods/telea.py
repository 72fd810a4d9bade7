"""Telea (2004) fast-marching inpainting from OpenCV: the non-learning baseline in the registry."""

from __future__ import annotations

import cv2
import numpy as np

from model.methods.base import ImageMethod
from model.methods.registry import MethodSpec


class TeleaMethod(ImageMethod):
    def __init__(self, spec: MethodSpec, radius: int = 5):
        self.spec = spec
        self.radius = radius

    def _fill(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        return cv2.inpaint(image, hole.astype(np.uint8) * 255, self.radius, cv2.INPAINT_TELEA)


def build(spec: MethodSpec, radius: int = 5, **kw) -> TeleaMethod:
    """`kw` (device, untrained, ...) is accepted and ignored: Telea has no network."""
    return TeleaMethod(spec, radius=radius)
