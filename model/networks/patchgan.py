"""70x70 PatchGAN discriminator (Isola et al. 2017): 4 conv layers with batch norm and LeakyReLU, then
a 1-channel conv giving one real/fake logit per overlapping patch. Conditional: input is concat(condition, image).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from model.networks.unet_pix2pix import init_weights


@dataclass(frozen=True)
class PatchGANConfig:
    in_channels: int = 6  # condition channels + image channels
    ndf: int = 64
    n_layers: int = 3  # stride-2 layers; 3 gives the 70x70 receptive field
    norm: str = "batch"  # "batch" (paper) | "spectral" (no batch statistics: ours)


class PatchGAN(nn.Module):
    def __init__(self, cfg: PatchGANConfig = PatchGANConfig()):
        super().__init__()
        self.cfg = cfg
        sn = cfg.norm == "spectral"
        wrap = spectral_norm if sn else (lambda m: m)
        layers: list[nn.Module] = [
            wrap(nn.Conv2d(cfg.in_channels, cfg.ndf, 4, 2, 1)),
            nn.LeakyReLU(0.2),
        ]
        c = cfg.ndf
        for i in range(1, cfg.n_layers + 1):
            c_out = cfg.ndf * min(2**i, 8)
            stride = 2 if i < cfg.n_layers else 1
            layers.append(wrap(nn.Conv2d(c, c_out, 4, stride, 1, bias=sn)))
            if not sn:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c = c_out
        layers.append(wrap(nn.Conv2d(c, 1, 4, 1, 1)))
        self.net = nn.Sequential(*layers)
        if not sn:
            init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, H/8 - 2, W/8 - 2) logits: 30x30 for 256x256
