"""Pix2Pix U-Net generator (Isola et al. 2017, as Ye 2022 describes it): 8 encoders, 7 decoders + output.

Encoders: 4x4 stride-2 convs, LeakyReLU(0.2), batch norm except the first and the last (innermost).
Decoders: 4x4 stride-2 transposed convs, batch norm, ReLU, dropout 0.5 in the first three, each
fed the mirrored encoder's output (skip connection). Output: transposed conv + tanh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class UNetPix2PixConfig:
    in_channels: int = 3  # 3 = RGB ("train A"), 4 = RGB + mask ("train B")
    out_channels: int = 3
    ngf: int = 64  # width of the first encoder; the paper's size is 64
    max_mult: int = 8  # channels are capped at max_mult * ngf
    n_down: int = 8  # 8 for 256x256 inputs (down to 1x1); fewer for small test images
    dropout: float = 0.5


def _widths(cfg: UNetPix2PixConfig) -> list[int]:
    return [cfg.ngf * min(2**i, cfg.max_mult) for i in range(cfg.n_down)]


class UNetPix2Pix(nn.Module):
    def __init__(self, cfg: UNetPix2PixConfig = UNetPix2PixConfig()):
        super().__init__()
        self.cfg = cfg
        w = _widths(cfg)
        n = cfg.n_down
        self.encoders = nn.ModuleList()
        for i in range(n):
            c_in = cfg.in_channels if i == 0 else w[i - 1]
            layers: list[nn.Module] = []
            if i > 0:  # the first encoder sees the raw input: no activation before it
                layers.append(nn.LeakyReLU(0.2, inplace=False))
            norm = 0 < i < n - 1  # no batch norm in the first and the innermost encoder
            layers.append(nn.Conv2d(c_in, w[i], 4, 2, 1, bias=not norm))
            if norm:
                layers.append(nn.BatchNorm2d(w[i]))
            self.encoders.append(nn.Sequential(*layers))
        # Decoder j (j = 0 is innermost) maps to the width of encoder n-2-j and is concatenated with it.
        self.decoders = nn.ModuleList()
        for j in range(n - 1):
            c_in = w[n - 1] if j == 0 else 2 * w[n - 1 - j]
            c_out = w[n - 2 - j]
            layers = [
                nn.ReLU(),
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
            ]
            if j < 3 and cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            self.decoders.append(nn.Sequential(*layers))
        self.out = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(2 * w[0], cfg.out_channels, 4, 2, 1), nn.Tanh()
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.encoders:  # (B, w_i, H / 2^(i+1), W / 2^(i+1))
            x = enc(x)
            skips.append(x)
        for j, dec in enumerate(self.decoders):
            x = torch.cat([dec(x), skips[-2 - j]], dim=1)
        return self.out(x)  # (B, out_channels, H, W) in [-1, 1]


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """pix2pix's initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif (
            isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d | nn.GroupNorm)
            and m.weight is not None
        ):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
