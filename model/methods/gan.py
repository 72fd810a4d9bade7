"""Every GAN method, built one way from its recipe (the `recipe` of its registry entry: which
generator it uses, what it reads, whether it composites, which losses train it); `build` loads its
shipped weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.config import WEIGHTS_DIR
from model.methods.base import TensorMethod, keep_known
from model.methods.registry import METHODS, GanRecipe, MethodSpec

# Every GAN method's recipe, from its registry entry (model/methods/registry.py).
RECIPES: dict[str, GanRecipe] = {k: s.recipe for k, s in METHODS.items() if s.recipe is not None}


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


def deliver(
    recipe: GanRecipe, net: nn.Module, image: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """What the method returns for masked faces (B, 3, H, W) in [-1, 1] and masks (B, 1, H, W):
    `generate`, averaged with the mirrored pass when the recipe has `self_ensemble` (Lim et al.
    2017). Used at inference and validation; training steps call `generate` once."""
    if not recipe.self_ensemble:
        return generate(recipe, net, image, mask)
    # One batch of both: on a CPU one pass of 2B faces is faster than two passes of B.
    both = generate(
        recipe, net, torch.cat([image, image.flip(-1)]), torch.cat([mask, mask.flip(-1)])
    )
    out, mirrored = both.chunk(2)
    return (out + mirrored.flip(-1)) / 2


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
        return deliver(self.recipe, self.net, images, masks)


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
    """The generator of a training checkpoint (runs/<name>/checkpoints/step_*.pt) as a Method: its
    weight average where the run kept one (`unmask train --ema`), as the run exports."""
    from model.run_folder import checkpoint_network, load_checkpoint

    ckpt = load_checkpoint(path)
    net = checkpoint_network(ckpt, "generator", averaged=True)
    card = {"checkpoint": str(path), "step": ckpt["step"]}
    return GanMethod(METHODS[ckpt["key"]], net, _device(device), card)
