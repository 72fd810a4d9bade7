"""Loss terms the GAN recipes combine: adversarial (BCE with logits), L1, hole-weighted L1, SSIM,
Yoshihashi et al.'s C1 (jaw landmarks) and C2 (masked pixel MSE), and a perceptual (LPIPS) term.

All images are (B, 3, H, W) in [-1, 1]; masks (B, 1, H, W) in {0, 1}, 1 = hole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _ssim
from torch import nn

from model.networks.landmark_regressor import JAW


def adversarial(
    logits: torch.Tensor, real: bool, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """BCEWithLogits against all-ones (real) or all-zeros (fake) patch labels.

    `weight` (same shape as logits, >= 0) restricts the mean to some patches (the mask region).
    """
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if weight is None:
        return F.binary_cross_entropy_with_logits(logits, target)
    per = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    # Per image, then over the batch: the same value whichever way a batch is split over processes.
    return ((per * weight).sum((1, 2, 3)) / weight.sum((1, 2, 3)).clamp_min(1e-6)).mean()


def l1(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return (pred - real).abs().mean()


def hole_l1(
    pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, hole_weight: float = 6.0
) -> torch.Tensor:
    """L1 with hole pixels weighted `hole_weight`, known pixels 1, each averaged over its own area
    per image (so small masks count as much as large ones)."""
    d = (pred - real).abs().mean(1, keepdim=True)  # (B, 1, H, W)
    hole = (d * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp_min(1.0)
    known = (d * (1 - mask)).sum((1, 2, 3)) / (1 - mask).sum((1, 2, 3)).clamp_min(1.0)
    return (hole_weight * hole + known).mean()


def ssim_loss(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """1 - SSIM (pytorch-msssim, Gaussian window 11, sigma 1.5) on the [0, 1] scale, float32."""
    win = 11 if min(pred.shape[-2:]) > 11 else 3  # tiny test images: a smaller window
    # Outside autocast: SSIM subtracts squared means, which bf16 would swamp with rounding error.
    with torch.autocast(pred.device.type, enabled=False):
        return 1 - _ssim(
            (pred.float() + 1) / 2,
            (real.float() + 1) / 2,
            data_range=1.0,
            size_average=True,
            win_size=win,
        )


def masked_mse(pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """C2 (Yoshihashi et al. 2022, Eq. 5): per hole pixel, the sum over R, G, B of squared 0-255
    differences, averaged over the hole's pixels; per image, then over the batch."""
    per_pixel = ((pred - real) * 127.5).pow(2).sum(1, keepdim=True)  # (B, 1, H, W)
    return ((per_pixel * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp_min(1.0)).mean()


def jaw_landmark_loss(regressor: nn.Module, pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """C1 (Yoshihashi et al. 2022, Eq. 4): mean over the 17 jaw points (0..16) of |G_n - R_n| (L1 of
    x and y, in pixels of the image) between the points found on the generated and the real face.

    The points come from the frozen landmark regressor (not dlib on saved PNGs, as in the paper),
    so the loss has a gradient to the generator; the real face's points are constants.
    """
    size = pred.shape[-1]
    with torch.no_grad():
        ref = regressor(real)[:, JAW]  # (B, 17, 2) in [0, 1]
    got = regressor(pred)[:, JAW]
    return (got - ref).abs().sum(-1).mean() * size


def landmark_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Regressor training: L1 over all 68 points, coordinates in [0, 1]."""
    return (pred - target).abs().mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE with logits + soft Dice (balances the mask / background areas)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return bce + dice.mean()


def perceptual(lpips_net: nn.Module, pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 (alex) distance, mean over the batch; gradients flow to `pred` only."""
    with torch.autocast(pred.device.type, enabled=False):  # unit-normalised features: keep fp32
        return lpips_net(pred.float(), real.float()).mean()


# --- the table the recipes name their terms from ---------------------------------------------


class Terms:
    """What a generator term may read: the output (as computed, and as float32), the target, the
    hole, and the frozen helper networks a task loaded (LPIPS, the landmark regressor)."""

    def __init__(self, fake, real, hole, lpips=None, regressor=None):
        self.fake, self.fake32 = fake, fake.float()
        self.real, self.hole, self.lpips, self.regressor = real, hole, lpips, regressor


# name -> term. A recipe's `losses` (and a preset's [losses.<method>]) may name only these and the
# adversarial terms of its discriminators ("adv" for "global", "adv_<name>" for the others).
LOSSES = {
    "l1": lambda t: l1(t.fake32, t.real),
    "hole_l1": lambda t: hole_l1(t.fake32, t.real, t.hole),
    "ssim": lambda t: ssim_loss(t.fake32, t.real),
    "c2": lambda t: masked_mse(t.fake32, t.real, t.hole),
    "c1": lambda t: jaw_landmark_loss(t.regressor, t.fake, t.real),
    "perceptual": lambda t: perceptual(t.lpips, t.fake, t.real),
}


def adversarial_term(discriminator: str) -> str:
    """The loss name of a discriminator's adversarial term."""
    return "adv" if discriminator == "global" else f"adv_{discriminator}"


def check_terms(method: str, weights: dict[str, float], discriminators) -> None:
    """Refuse, before any step, a loss name that no table knows (a misspelt "L1" would otherwise
    train with the other terms alone)."""
    known = set(LOSSES) | {adversarial_term(d) for d in discriminators}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ValueError(
            f"{method}: unknown loss term(s) {unknown}; known for this method: {sorted(known)}"
        )
