"""Small U-Net mask segmenter: masked face RGB (B, 3, H, W) -> (B, 1, H, W) logits of "pixel is mask".

Group norm (no batch statistics) and a 3-level encoder; well under 1M parameters at the default width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetSegmenterConfig:
    width: int = 16
    levels: int = 3


def _block(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
        nn.GroupNorm(min(8, c_out // 4), c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
        nn.GroupNorm(min(8, c_out // 4), c_out),
        nn.ReLU(),
    )


class UNetSegmenter(nn.Module):
    def __init__(self, cfg: UNetSegmenterConfig = UNetSegmenterConfig()):
        super().__init__()
        self.cfg = cfg
        w = [cfg.width * 2**i for i in range(cfg.levels + 1)]
        # A stride-2 stem: the mask boundary does not need full-resolution features to be found.
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 4, 2, 1), nn.ReLU())
        self.down = nn.ModuleList(_block(w[i], w[i + 1]) for i in range(cfg.levels))
        self.up = nn.ModuleList(_block(w[i + 1] + w[i], w[i]) for i in reversed(range(cfg.levels)))
        self.head = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w0, H/2, W/2)
        skips = [x]
        for i, blk in enumerate(self.down):
            x = blk(F.max_pool2d(x, 2))
            if i < len(self.down) - 1:
                skips.append(x)
        for blk in self.up:
            s = skips.pop()
            x = blk(
                torch.cat(
                    [F.interpolate(x, size=s.shape[2:], mode="bilinear", align_corners=False), s], 1
                )
            )
        return F.interpolate(self.head(x), scale_factor=2.0, mode="bilinear", align_corners=False)
