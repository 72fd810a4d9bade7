"""The eigenface prior as a method: gappy PCA (Everson & Sirovich 1995) fills the hole from a PCA
basis of aligned training faces fitted to the visible pixels (model/networks/gappy_pca.py).
`unmask train --method eigenface` fits the basis (closed form, minutes on a CPU).
"""

from __future__ import annotations

from pathlib import Path

import torch

from model.config import WEIGHTS_DIR
from model.methods.base import TensorMethod
from model.methods.registry import MethodSpec


class EigenfaceMethod(TensorMethod):
    composites = True

    def __init__(self, spec: MethodSpec, prior, device: torch.device, card: dict | None = None):
        self.spec = spec
        self.prior = prior.to(device).eval()
        self.device = device
        self.card = card or {}

    def _forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.prior(images, masks)


def random_prior(networks: dict | None = None, seed: int = 0):
    """A GappyPCA with a seeded random orthonormal basis (tests and timing before a fit exists)."""
    from model.networks import build_network

    prior = build_network("gappy_pca", **(networks or {}).get("gappy_pca", {}))
    k, p = prior.components.shape
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p, k, generator=g))  # (P, K), orthonormal columns
    prior.components.copy_(q.T)
    prior.variance.copy_(1.0 / torch.arange(1, k + 1, dtype=torch.float32))
    return prior


def build(
    spec: MethodSpec,
    *,
    untrained: bool = False,
    preset: str = "compact",
    device: str | torch.device | None = None,
    weights_dir: str | Path = WEIGHTS_DIR,
) -> EigenfaceMethod:
    """The shipped basis (`model/weights/eigenface.safetensors`), or with `untrained=True` a seeded
    random basis of the `preset`'s size."""
    from model.checkpoint import load_weights
    from model.networks import from_architecture
    from model.train_config import load_preset

    dev = torch.device(device) if device is not None else torch.device("cpu")
    if untrained:
        return EigenfaceMethod(
            spec, random_prior(load_preset(preset).get("networks", {})), dev, {"untrained": True}
        )
    state, card = load_weights(spec.key, weights_dir)
    prior = from_architecture(card["architecture"])
    prior.load_state_dict(state)
    return EigenfaceMethod(spec, prior, dev, card)
