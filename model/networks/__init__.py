"""Network architectures, one a file; `NETWORKS` maps a name to its (config dataclass, module) pair.

Presets (model/presets/*.toml) hold one table per network name; `build_network` turns a table into a module.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from torch import nn

from model.networks.gappy_pca import GappyPCA, GappyPCAConfig
from model.networks.landmark_regressor import LandmarkRegressor, LandmarkRegressorConfig
from model.networks.patchgan import PatchGAN, PatchGANConfig
from model.networks.unet_dilated_se import UNetDilatedSE, UNetDilatedSEConfig
from model.networks.unet_pix2pix import UNetPix2Pix, UNetPix2PixConfig
from model.networks.unet_segmenter import UNetSegmenter, UNetSegmenterConfig
from model.networks.unmask_generator import UnmaskGenerator, UnmaskGeneratorConfig

NETWORKS: dict[str, tuple[type, type[nn.Module]]] = {
    "unet_pix2pix": (UNetPix2PixConfig, UNetPix2Pix),
    "patchgan": (PatchGANConfig, PatchGAN),
    "unet_dilated_se": (UNetDilatedSEConfig, UNetDilatedSE),
    "unmask_generator": (UnmaskGeneratorConfig, UnmaskGenerator),
    "unet_segmenter": (UNetSegmenterConfig, UNetSegmenter),
    "landmark_regressor": (LandmarkRegressorConfig, LandmarkRegressor),
    "gappy_pca": (GappyPCAConfig, GappyPCA),
}


def network_config(name: str, **overrides: Any):
    """The frozen config of network `name`, defaults overridden by `overrides` (unknown keys refused)."""
    cfg_cls, _ = NETWORKS[name]
    known = {f.name for f in fields(cfg_cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(
            f"unknown option(s) for network {name!r}: {sorted(unknown)}; known: {sorted(known)}"
        )
    return cfg_cls(**overrides)


def build_network(name: str, **overrides: Any) -> nn.Module:
    """Network `name` built from its config; `architecture(net)` gives back what rebuilds it."""
    cfg = network_config(name, **overrides)
    net = NETWORKS[name][1](cfg)
    net.architecture = {"network": name, **asdict(cfg)}
    return net


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def from_architecture(architecture: dict[str, Any]) -> nn.Module:
    """Rebuild a network from the `architecture` dict stored in a weights card or a checkpoint."""
    arch = dict(architecture)
    name = arch.pop("network")
    # JSON and TOML turn tuples into lists; the frozen configs want tuples.
    return build_network(
        name, **{k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()}
    )
