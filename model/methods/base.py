"""The method contract (`inpaint` on one aligned face, `inpaint_batch` on tensors) and the one owner
of compositing: a compositing method returns the known pixels exactly as given.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from model.methods.registry import MethodSpec


class Method(Protocol):
    spec: MethodSpec
    composites: bool  # True: pixels outside the mask are returned exactly as given

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """image: uint8 (H, W, 3) RGB; mask: bool (H, W), True = hole. Returns uint8 (H, W, 3)."""
        ...

    def inpaint_batch(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """images: float (B, 3, H, W) in [-1, 1]; masks: float (B, 1, H, W) in {0, 1}.

        Returns float (B, 3, H, W) in [-1, 1] on the same device.
        """
        ...


def check_inputs(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Validate one face and its mask; returns the mask as bool (H, W). Raises ValueError."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask must be (H, W) = {image.shape[:2]}, got {mask.shape}")
    return np.asarray(mask) > 0


def keep_known(result: torch.Tensor, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """m * result + (1 - m) * images for tensors (B, C, H, W) and masks (B, 1, H, W) in {0, 1}:
    the known pixels bit for bit (m is exactly 0 or 1)."""
    dtype = torch.promote_types(result.dtype, images.dtype)  # bf16 output + fp32 input -> fp32
    m = (masks > 0.5).to(dtype)
    return m * result.to(dtype) + (1 - m) * images.to(dtype)


def to_tensor(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (H, W, 3) and bool (H, W) -> float (1, 3, H, W) in [-1, 1] and (1, 1, H, W) in {0, 1}."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    return x, torch.from_numpy(np.asarray(mask, dtype=bool))[None, None].float()


def to_image(t: torch.Tensor) -> np.ndarray:
    """float (3, H, W) in [-1, 1] -> uint8 (H, W, 3)."""
    return (
        ((t.float().clamp(-1, 1) + 1) * 127.5)
        .round()
        .to(torch.uint8)
        .permute(1, 2, 0)
        .cpu()
        .numpy()
    )


class TensorMethod:
    """A method computed on tensors (a network, a linear prior): `inpaint` goes through
    `inpaint_batch`; compositing methods return the known pixels of the uint8 input exactly."""

    spec: MethodSpec
    composites: bool = True

    def _forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) [-1, 1] and (B, 1, H, W) {0, 1} -> raw output (B, 3, H, W) [-1, 1]."""
        raise NotImplementedError

    @torch.no_grad()
    def inpaint_batch(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, torch.float32)
        m = (masks.to(self.device, torch.float32) > 0.5).float()
        out = self._forward(x, m).float().clamp(-1, 1)
        if self.composites:
            out = keep_known(out, x, m)
        return out.to(images.device)

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        hole = check_inputs(image, mask)
        out = to_image(self.inpaint_batch(*to_tensor(image, hole))[0])
        if self.composites:
            out[~hole] = image[~hole]  # exact after the uint8 round trip
        return out


class ImageMethod:
    """A method computed on one uint8 image at a time (OpenCV, PatchMatch): `inpaint_batch` loops."""

    spec: MethodSpec
    composites: bool = True

    def _fill(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) and bool (H, W) -> uint8 (H, W, 3) with the hole filled."""
        raise NotImplementedError

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        hole = check_inputs(image, mask)
        out = self._fill(np.ascontiguousarray(image), hole)
        out[~hole] = image[~hole]
        return out

    def inpaint_batch(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        u8 = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        u8 = u8.permute(0, 2, 3, 1).cpu().numpy()
        ms = (masks[:, 0] > 0.5).cpu().numpy()
        out = np.stack([self.inpaint(im, m) for im, m in zip(u8, ms, strict=True)])
        res = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1
        # Known pixels are returned exactly as given (no uint8 round trip).
        return keep_known(res, images.detach().cpu().float(), masks.detach().cpu()).to(
            images.device
        )
