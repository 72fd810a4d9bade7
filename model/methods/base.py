"""The method contract: `inpaint` on one aligned face, `inpaint_batch` on tensors."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from model.methods.registry import MethodSpec


class Method(Protocol):
    spec: MethodSpec

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """image: uint8 (H, W, 3) RGB; mask: bool (H, W), True = hole. Returns uint8 (H, W, 3)."""
        ...

    def inpaint_batch(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """images: float (B, 3, H, W) in [-1, 1]; masks: float (B, 1, H, W) in {0, 1}.

        Returns float (B, 3, H, W) in [-1, 1] on the same device.
        """
        ...
