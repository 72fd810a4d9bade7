"""This project's generator: a mask-aware gated-convolution U-Net with a dilated bottleneck.

Input is (RGB * (1 - m), m): the hole is blanked so the network cannot copy the mask's colour.
With a prior (`prior_size` > 0, the v2 generator), a gappy-PCA face prior (model/networks/gappy_pca.py,
its buffers shipped inside the generator's weights) first fills the hole with a blurry but plausible
lower face; the network sees that fill as three more input channels and adds a residual to it (its
last layer starts at zero, so an untrained generator returns the prior's fill).
Gated convs (Yu et al. 2019, DeepFill v2) learn per-pixel how far to trust the known pixels; residual
dilated gated blocks at 1/8 size give every hole pixel a view of the whole face. No batch statistics
(per-sample behaviour, so data-parallel and single-process training agree). The output is composited:
known pixels are returned unchanged, only the hole is generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UnmaskGeneratorConfig:
    ngf: int = 32
    dilations: tuple[int, ...] = (2, 4, 8, 16)  # one residual gated block per rate, at 1/8 size
    composite: bool = True  # out = m * generated + (1 - m) * input
    # The linear face prior inside the generator; 0 = none (the v1 generator).
    prior_size: int = 0  # side of the prior's stored basis
    prior_components: int = 160
    prior_fit_size: int = 32  # side at which the prior's coefficients are fitted
    prior_ridge: float = 0.1
    prior_mirror: bool = False  # fit the basis on the training faces and their mirror images
    prior_clusters: int = 1  # > 1: a Gaussian-mixture prior on the coefficients (gappy_pca.py)
    prior_temperature: float = 1.0  # the mixture's softmax temperature
    prior_mixture_weight: float = 1.0  # the mixture's share of the fill; the rest: one Gaussian


class GatedConv(nn.Module):
    """features * sigmoid(gate), both from one conv (2 * c_out channels); ELU on the features."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(
            c_in, 2 * c_out, k, stride, dilation * (k - 1) // 2, dilation=dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, g = self.conv(x).chunk(2, dim=1)
        return F.elu(f) * torch.sigmoid(g)


class GatedResBlock(nn.Module):
    def __init__(self, c: int, dilation: int):
        super().__init__()
        self.a = GatedConv(c, c, 3, 1, dilation)
        self.b = GatedConv(c, c, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class UnmaskGenerator(nn.Module):
    def __init__(self, cfg: UnmaskGeneratorConfig = UnmaskGeneratorConfig()):
        super().__init__()
        self.cfg = cfg
        g = cfg.ngf
        # Widths grow towards the bottleneck, where the hole is filled; the full-size levels stay thin
        # (they only sharpen) so that a 256x256 face runs in ~0.1 s on two CPU cores.
        c0, c1, c2, c3 = g // 4, g // 2, 2 * g, 4 * g
        self.prior = None
        if cfg.prior_size:
            from model.networks.gappy_pca import GappyPCA, GappyPCAConfig

            self.prior = GappyPCA(
                GappyPCAConfig(
                    size=cfg.prior_size,
                    components=cfg.prior_components,
                    fit_size=cfg.prior_fit_size,
                    ridge=cfg.prior_ridge,
                    mirror=cfg.prior_mirror,
                    clusters=cfg.prior_clusters,
                    temperature=cfg.prior_temperature,
                    mixture_weight=cfg.prior_mixture_weight,
                )
            )
        self.stem = GatedConv(7 if self.prior is not None else 4, c0, 5, 1)  # (B, c0, H, W)
        self.down1 = GatedConv(c0, c1, 4, 2)  # H/2
        self.down2 = GatedConv(c1, c2, 4, 2)  # H/4
        self.down3 = GatedConv(c2, c3, 4, 2)  # H/8
        self.middle = nn.Sequential(*[GatedResBlock(c3, d) for d in cfg.dilations])
        self.up3 = GatedConv(c3 + c2, c2)  # after 2x upsampling, with the H/4 skip
        self.up2 = GatedConv(c2 + c1, c1)  # H/2
        self.up1 = GatedConv(c1 + c0, c0)  # H
        self.out = nn.Conv2d(c0, 3, 3, 1, 1)
        if self.prior is not None:  # the residual starts at zero: the untrained output is the prior
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [-1, 1], mask (B, 1, H, W) {0, 1} -> (B, 3, H, W) in [-1, 1]."""
        known = image * (1 - mask)
        if self.prior is not None:
            with torch.no_grad():  # the prior is fixed (buffers only): (B, 3, H, W)
                base = known + mask * self.prior(image, mask)
            x0 = self.stem(torch.cat([known, mask, base], dim=1))
        else:
            x0 = self.stem(torch.cat([known, mask], dim=1))
        x1 = self.down1(x0)  # (B, g, H/2, W/2)
        x2 = self.down2(x1)
        x = self.middle(self.down3(x2))
        x = self.up3(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), x2], 1))
        x = self.up2(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), x1], 1))
        x = self.up1(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), x0], 1))
        if self.prior is not None:
            out = base + self.out(x)  # the prior's face plus a learned correction
        else:
            out = torch.tanh(self.out(x))
        if self.cfg.composite:
            out = mask * out + (1 - mask) * image
        return out
