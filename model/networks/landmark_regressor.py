"""Small landmark regressor: face RGB (B, 3, H, W) -> (B, 68, 2) (x, y) coordinates in [0, 1].

Trained on dlib's 68 points over masked and unmasked faces; frozen, it gives the `landmark` method a
differentiable jaw-landmark loss (C1). A small encoder-decoder predicts one heatmap per point at 1/4
size; a spatial soft-argmax turns each heatmap into coordinates (differentiable, sub-pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

N_LANDMARKS = 68
# 68-point (iBUG 300-W) index of each point's mirror image under a horizontal flip.
MIRROR_68: tuple[int, ...] = (
    *range(16, -1, -1),  # jaw 0..16
    *range(26, 16, -1),  # eyebrows 17..26
    27, 28, 29, 30,  # nose bridge
    35, 34, 33, 32, 31,  # nostrils
    45, 44, 43, 42, 47, 46,  # right eye <-> left eye
    39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,  # outer lips
    64, 63, 62, 61, 60, 67, 66, 65,  # inner lips
)  # fmt: skip
JAW = slice(0, 17)


@dataclass(frozen=True)
class LandmarkRegressorConfig:
    width: int = 24


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.GroupNorm(min(8, c_out // 4), c_out),
        nn.ReLU(),
    )


class LandmarkRegressor(nn.Module):
    def __init__(self, cfg: LandmarkRegressorConfig = LandmarkRegressorConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.enc = nn.ModuleList(
            [
                nn.Sequential(_conv(3, w, 2), _conv(w, w, 2)),  # H/4
                nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w)),  # H/8
                nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w)),  # H/16
                nn.Sequential(
                    _conv(4 * w, 4 * w, 2), _conv(4 * w, 4 * w)
                ),  # H/32: whole-face context
            ]
        )
        self.dec = nn.ModuleList([_conv(8 * w, 4 * w), _conv(6 * w, 2 * w), _conv(3 * w, 2 * w)])
        self.heatmaps = nn.Conv2d(2 * w, N_LANDMARKS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.enc:
            x = enc(x)
            skips.append(x)
        skips.pop()
        for dec in self.dec:
            s = skips.pop()
            x = dec(
                torch.cat(
                    [F.interpolate(x, size=s.shape[2:], mode="bilinear", align_corners=False), s], 1
                )
            )
        return soft_argmax(self.heatmaps(x).float())  # (B, 68, 2)


def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) heatmap logits -> (B, K, 2) expected (x, y), pixel centres at (i + 0.5) / w."""
    b, k, h, w = logits.shape
    p = logits.flatten(2).softmax(-1).view(b, k, h, w)
    xs = (torch.arange(w, device=logits.device, dtype=p.dtype) + 0.5) / w
    ys = (torch.arange(h, device=logits.device, dtype=p.dtype) + 0.5) / h
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], dim=-1)
