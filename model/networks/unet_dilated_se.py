"""Ye's customised generator ("train C", after Din et al. 2020): a U-Net with 5 skip connections,
squeeze-and-excitation after the first three encoders, instance norm, and four dilated 3x3 convs
(rates 2, 4, 8, 16) at the bottleneck. Input: RGB + mask channel.

The three stride-2 encoders bring a 256x256 face to 32x32; encoders 4 and 5 keep 32x32 so that the
dilated convs (rate 16 reaches +-128 input pixels) see real features rather than padding, which they
would at the 4x4 bottleneck of an 8-level U-Net.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.networks.unet_pix2pix import init_weights


@dataclass(frozen=True)
class UNetDilatedSEConfig:
    in_channels: int = 4
    out_channels: int = 3
    ngf: int = 64
    dilations: tuple[int, ...] = (2, 4, 8, 16)
    se_reduction: int = 8
    dropout: float = 0.5


class SqueezeExcite(nn.Module):
    """Hu et al. 2018: channel weights from globally pooled features."""

    def __init__(self, c: int, reduction: int):
        super().__init__()
        hidden = max(c // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, c), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fc(x.mean(dim=(2, 3)))  # (B, C)
        return x * w[:, :, None, None]


def _inorm(c: int) -> nn.Module:
    return nn.InstanceNorm2d(c, affine=True)


class UNetDilatedSE(nn.Module):
    def __init__(self, cfg: UNetDilatedSEConfig = UNetDilatedSEConfig()):
        super().__init__()
        self.cfg = cfg
        g = cfg.ngf
        w = [g, 2 * g, 4 * g, 8 * g, 8 * g]
        se = cfg.se_reduction
        # Encoders: (stride, width); 1-3 halve the size and carry an SE block, 4-5 keep it.
        self.encoders = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(cfg.in_channels, w[0], 4, 2, 1), SqueezeExcite(w[0], se)),
                nn.Sequential(
                    nn.LeakyReLU(0.2),
                    nn.Conv2d(w[0], w[1], 4, 2, 1),
                    _inorm(w[1]),
                    SqueezeExcite(w[1], se),
                ),
                nn.Sequential(
                    nn.LeakyReLU(0.2),
                    nn.Conv2d(w[1], w[2], 4, 2, 1),
                    _inorm(w[2]),
                    SqueezeExcite(w[2], se),
                ),
                nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(w[2], w[3], 3, 1, 1), _inorm(w[3])),
                nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(w[3], w[4], 3, 1, 1), _inorm(w[4])),
            ]
        )
        self.dilated = nn.Sequential(
            *[
                nn.Sequential(
                    nn.LeakyReLU(0.2), nn.Conv2d(w[4], w[4], 3, 1, d, dilation=d), _inorm(w[4])
                )
                for d in cfg.dilations
            ]
        )

        def dec(c_in: int, c_out: int, up: bool, drop: bool) -> nn.Module:
            conv = (
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1) if up else nn.Conv2d(c_in, c_out, 3, 1, 1)
            )
            layers = [nn.ReLU(), conv, _inorm(c_out)]
            if drop and cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            return nn.Sequential(*layers)

        # Decoder k consumes concat(previous, skip from encoder 5-k); dropout in the first three.
        self.decoders = nn.ModuleList(
            [
                dec(2 * w[4], w[3], up=False, drop=True),  # 32x32
                dec(2 * w[3], w[2], up=False, drop=True),  # 32x32
                dec(2 * w[2], w[1], up=True, drop=True),  # -> 64x64
                dec(2 * w[1], w[0], up=True, drop=False),  # -> 128x128
            ]
        )
        self.out = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(2 * w[0], cfg.out_channels, 4, 2, 1), nn.Tanh()
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
        x = x + self.dilated(
            x
        )  # residual: the dilated stack refines the bottleneck (B, 8g, H/8, W/8)
        for k, dec in enumerate(self.decoders):
            x = dec(torch.cat([x, skips[-1 - k]], dim=1))
        return self.out(torch.cat([x, skips[0]], dim=1))  # (B, 3, H, W)
