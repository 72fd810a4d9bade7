"""Every GAN method, built one way: `RECIPES` says, per registry key, which generator it uses, what
it reads, whether it composites, and which losses train it; `build` loads its shipped weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.config import WEIGHTS_DIR
from model.methods.base import TensorMethod, keep_known
from model.methods.registry import METHODS, MethodSpec


@dataclass(frozen=True)
class GanRecipe:
    generator: str  # network name in model.networks.NETWORKS
    inputs: str  # "rgb": masked face only | "rgb+mask": 4-channel input | "image,mask": forward(image, mask)
    composite: bool  # keep the known pixels: out = m * G + (1 - m) * input
    losses: dict[str, float]  # loss term (model/tasks.py) -> weight
    # Discriminators: name -> PatchGAN options; "local" ones are judged on the mask region only.
    discriminators: dict[str, dict[str, Any]] = field(default_factory=lambda: {"global": {}})
    # Train the generator alone (reconstruction terms) for cfg.warmup_steps first.
    warmup: bool = False
    # Training only: half the faces get their hole grown by this many px (at 256x256), so the model
    # also fills holes larger than the mask, as a cautious (dilated) segmenter mask gives at use.
    grow_px: int = 0


RECIPES: dict[str, GanRecipe] = {
    # Ye 2022, Eq. 3: BCE-with-logits adversarial + 200 * L1; RGB only ("train A").
    "pix2pix": GanRecipe("unet_pix2pix", "rgb", False, {"adv": 1.0, "l1": 200.0}),
    # Same with the mask as a 4th input channel ("train B").
    "pix2pix_mask": GanRecipe("unet_pix2pix", "rgb+mask", False, {"adv": 1.0, "l1": 200.0}),
    # Ye 2022, Eq. 5: 200 * SSIM loss in place of L1 ("train C").
    "dilated_se": GanRecipe("unet_dilated_se", "rgb+mask", False, {"adv": 1.0, "ssim": 200.0}),
    # Yoshihashi et al. 2022, Eq. 3: adv + l1*lambda1 + C1*lambda2 + C2*lambda3 (the paper gives no
    # lambda values; lambda1 = 100 as its Eq. 1, lambda2/3 put C1 (px) and C2 (0-255^2) on L1's scale).
    "landmark": GanRecipe(
        "unet_pix2pix", "rgb", False, {"adv": 1.0, "l1": 100.0, "c1": 1.0, "c2": 0.001}
    ),
    # Ours (v2): a gappy-PCA face prior inside the generator fills the hole; the gated U-Net corrects
    # it, trained with hole-weighted L1, SSIM and LPIPS on the composite, a global and a
    # mask-region discriminator (spectral norm), and a warm-up without the adversarial terms.
    "unmask": GanRecipe(
        "unmask_generator",
        "image,mask",
        True,
        {"adv": 0.5, "adv_local": 0.5, "hole_l1": 20.0, "ssim": 20.0, "perceptual": 30.0},
        discriminators={
            "global": {"norm": "spectral"},
            "local": {"norm": "spectral", "n_layers": 2},
        },
        warmup=True,
        grow_px=4,
    ),
}


def input_channels(recipe: GanRecipe) -> int:
    """Channels of the generator's input, which is also the discriminators' condition."""
    return {"rgb": 3, "rgb+mask": 4, "image,mask": 4}[recipe.inputs]


def generator_overrides(recipe: GanRecipe) -> dict[str, Any]:
    """Architecture options that follow from the recipe rather than the width preset."""
    return {} if recipe.inputs == "image,mask" else {"in_channels": input_channels(recipe)}


def condition(recipe: GanRecipe, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What the generator sees, as one tensor (also the discriminators' condition): (B, 3|4, H, W)."""
    if recipe.inputs == "rgb":
        return image
    if recipe.inputs == "rgb+mask":
        return torch.cat([image, mask], dim=1)
    return torch.cat([image * (1 - mask), mask], dim=1)


def generate(
    recipe: GanRecipe, net: nn.Module, image: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Run the generator on masked faces (B, 3, H, W) and masks (B, 1, H, W); composite if the recipe says."""
    out = net(image, mask) if recipe.inputs == "image,mask" else net(condition(recipe, image, mask))
    return keep_known(out, image, mask) if recipe.composite else out


def build_generator(key: str, networks: dict[str, dict[str, Any]] | None = None) -> nn.Module:
    """The generator of method `key` with widths from a preset's `networks` tables."""
    from model.networks import build_network

    recipe = RECIPES[key]
    opts = dict((networks or {}).get(recipe.generator, {}))
    return build_network(recipe.generator, **{**opts, **generator_overrides(recipe)})


class GanMethod(TensorMethod):
    """A trained (or untrained) generator behind the Method contract."""

    def __init__(
        self, spec: MethodSpec, net: nn.Module, device: torch.device, card: dict | None = None
    ):
        self.spec = spec
        self.recipe = RECIPES[spec.key]
        self.composites = self.recipe.composite
        self.net = net.to(device).eval()
        self.net.requires_grad_(False)
        self.device = device
        self.card = card or {}

    def _forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return generate(self.recipe, self.net, images, masks)


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build(
    spec: MethodSpec,
    *,
    untrained: bool = False,
    preset: str = "compact",
    device: str | torch.device | None = None,
    weights_dir: str | Path = WEIGHTS_DIR,
) -> GanMethod:
    """The method `spec.key`: its shipped weights (architecture from the card), or, with
    `untrained=True`, a generator of the `preset`'s widths initialised from seed 0 (tests, timing)."""
    from model.checkpoint import load_weights
    from model.networks import from_architecture
    from model.train_config import load_preset

    if spec.key not in RECIPES:
        raise KeyError(f"{spec.key!r} is not a GAN method; GAN methods: {', '.join(RECIPES)}")
    dev = _device(device)
    if untrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = build_generator(spec.key, load_preset(preset).get("networks", {}))
        return GanMethod(spec, net, dev, {"untrained": True, "preset": preset})
    state, card = load_weights(spec.key, weights_dir)
    net = from_architecture(card["architecture"])
    net.load_state_dict(state)
    return GanMethod(spec, net, dev, card)


def from_checkpoint(path: str | Path, device: str | torch.device | None = None) -> GanMethod:
    """The generator of a training checkpoint (runs/<name>/checkpoints/step_*.pt) as a Method."""
    from model.networks import from_architecture

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    key = ckpt["key"]
    net = from_architecture(ckpt["architectures"]["generator"])
    net.load_state_dict(ckpt["nets"]["generator"])
    return GanMethod(
        METHODS[key], net, _device(device), {"checkpoint": str(path), "step": ckpt["step"]}
    )
