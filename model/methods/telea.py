"""Telea (2004) fast-marching inpainting from OpenCV: the non-learning baseline in the registry."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from model.methods.registry import MethodSpec


class TeleaMethod:
    def __init__(self, spec: MethodSpec, radius: int = 5):
        self.spec = spec
        self.radius = radius

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask must be (H, W) = {image.shape[:2]}, got {mask.shape}")
        m = (np.asarray(mask) > 0).astype(np.uint8) * 255
        out = cv2.inpaint(np.ascontiguousarray(image), m, self.radius, cv2.INPAINT_TELEA)
        out[m == 0] = image[m == 0]  # cv2 leaves them untouched already; make it a guarantee
        return out

    def inpaint_batch(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        u8 = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        u8 = u8.permute(0, 2, 3, 1).cpu().numpy()
        ms = (masks[:, 0] > 0.5).cpu().numpy()
        out = np.stack([self.inpaint(im, m) for im, m in zip(u8, ms, strict=True)])
        res = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1
        # Known pixels are returned exactly as given (no uint8 round trip).
        mk = masks.detach().cpu().float()
        res = mk * res + (1 - mk) * images.detach().cpu().float()
        return res.to(images.device)


def build(spec: MethodSpec, radius: int = 5, **kw) -> TeleaMethod:
    """`kw` (device, untrained, ...) is accepted and ignored: Telea has no network."""
    return TeleaMethod(spec, radius=radius)
