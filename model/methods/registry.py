"""The one list of inpainting methods (`METHODS`): demo, evaluation, study and analysis iterate it,
and `ordered` / `parse` are the one way to sort and read method keys.

Keys are stable slugs used in file names, database rows and table columns. A method is one entry:
its spec and, for a GAN, its recipe (generator, inputs, losses, discriminators), which both the
trainer (model/tasks.py) and the loader (model/methods/gan.py) read. This module imports nothing
heavy: each spec names the factory that builds the method, imported only when loaded.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from model.config import MASKED, REAL

if TYPE_CHECKING:
    from model.methods.base import Method


@dataclass(frozen=True)
class GanRecipe:
    """How a GAN method is built and trained (read by model/methods/gan.py and model/tasks.py)."""

    generator: str  # network name in model.networks.NETWORKS
    inputs: str  # "rgb": masked face only | "rgb+mask": 4-channel input | "image,mask": forward(image, mask)
    composite: bool  # keep the known pixels: out = m * G + (1 - m) * input
    losses: dict[str, float]  # loss term (model.losses.LOSSES, "adv", "adv_<name>") -> weight
    # Discriminators: name -> PatchGAN options; "local" ones are judged on the mask region only.
    discriminators: dict[str, dict[str, Any]] = field(default_factory=lambda: {"global": {}})
    # Train the generator alone (reconstruction terms) for cfg.warmup_steps first.
    warmup: bool = False
    # Training only: half the faces get their hole grown by this many px (at 256x256), so the model
    # also fills holes larger than the mask, as a cautious (dilated) segmenter mask gives at use.
    grow_px: int = 0
    # Inference only (never in a training step): also run the mirror image (left-right flipped)
    # and average the two outputs, the flip self-ensemble of Lim et al. 2017 (EDSR+), at twice
    # the inference time. Faces are near-symmetric, so the two passes err differently.
    self_ensemble: bool = False


GAN = "model.methods.gan:build"  # the factory of every method with a recipe


@dataclass(frozen=True)
class MethodSpec:
    key: str
    label: str
    summary: str  # one or two sentences for the demo's About tab and the README
    reference: str  # the paper it follows
    trainable: bool  # has weights made by `unmask train`
    uses_mask: bool  # reads the mask (as an input channel or to composite)
    factory: str  # "module:function" returning a Method; imported lazily
    recipe: GanRecipe | None = None  # GAN methods: what `unmask train` optimises, how it generates

    def load(self, **kwargs) -> Method:
        """Build the method (loading its shipped weights where it has any)."""
        module_name, func_name = self.factory.split(":")
        return getattr(importlib.import_module(module_name), func_name)(self, **kwargs)


METHODS: dict[str, MethodSpec] = {
    spec.key: spec
    for spec in (
        MethodSpec(
            key="telea",
            label="Patch-based (Telea)",
            summary="OpenCV's fast-marching inpainting (cv2.INPAINT_TELEA) inside the mask; no learning.",
            reference="Telea 2004; the baseline of Yoshihashi et al. 2022",
            trainable=False,
            uses_mask=True,
            factory="model.methods.telea:build",
        ),
        MethodSpec(
            key="patchmatch",
            label="PatchMatch",
            summary="Patch-based synthesis: the hole is filled with patches of the rest of the face found by randomised nearest-neighbour search (pypatchmatch); no learning.",
            reference="Barnes et al. 2009 (SIGGRAPH)",
            trainable=False,
            uses_mask=True,
            factory="model.methods.patchmatch:build",
        ),
        MethodSpec(
            key="eigenface",
            label="Eigenface prior (gappy PCA)",
            summary="A PCA basis of aligned training faces; per face, a ridge fit of the coefficients to the visible pixels reconstructs the hole (linear, blurry, but a real lower face).",
            reference="Everson & Sirovich 1995; Hwang & Lee 2003",
            trainable=True,
            uses_mask=True,
            factory="model.methods.eigenface:build",
        ),
        MethodSpec(
            key="pix2pix",
            label="Pix2Pix",
            summary="U-Net generator + PatchGAN discriminator with an L1 loss, RGB input only (Ye's 'train A').",
            reference="Isola et al. 2017; Ye 2022 (train A)",
            trainable=True,
            uses_mask=False,
            factory=GAN,
            # Ye 2022, Eq. 3: BCE-with-logits adversarial + 200 * L1; RGB only ("train A").
            recipe=GanRecipe("unet_pix2pix", "rgb", False, {"adv": 1.0, "l1": 200.0}),
        ),
        MethodSpec(
            key="pix2pix_mask",
            label="Pix2Pix + mask",
            summary="Pix2Pix with the binary mask as a fourth input channel (Ye's 'train B').",
            reference="Ye 2022 (train B)",
            trainable=True,
            uses_mask=True,
            factory=GAN,
            # Same with the mask as a 4th input channel ("train B").
            recipe=GanRecipe("unet_pix2pix", "rgb+mask", False, {"adv": 1.0, "l1": 200.0}),
        ),
        MethodSpec(
            key="dilated_se",
            label="Dilated-SE GAN",
            summary="U-Net with 5 skips, dilated bottleneck (2/4/8/16), squeeze-excitation blocks, instance norm and an SSIM loss (Ye's 'train C').",
            reference="Din et al. 2020; Ye 2022 (train C)",
            trainable=True,
            uses_mask=True,
            factory=GAN,
            # Ye 2022, Eq. 5: 200 * SSIM loss in place of L1 ("train C").
            recipe=GanRecipe("unet_dilated_se", "rgb+mask", False, {"adv": 1.0, "ssim": 200.0}),
        ),
        MethodSpec(
            key="landmark",
            label="Landmark + masked-pixel loss",
            summary="Pix2Pix plus a jaw-landmark coordinate loss (C1) and a masked-region pixel MSE (C2).",
            reference="Yoshihashi, Ienaga & Sugimoto, VISAPP 2022",
            trainable=True,
            uses_mask=True,
            factory=GAN,
            # Eq. 3: adv + l1*lambda1 + C1*lambda2 + C2*lambda3 (the paper gives no lambda values;
            # lambda1 = 100 as its Eq. 1, lambda2/3 put C1 (px) and C2 (0-255^2) on L1's scale).
            recipe=GanRecipe(
                "unet_pix2pix", "rgb", False, {"adv": 1.0, "l1": 100.0, "c1": 1.0, "c2": 0.001}
            ),
        ),
        MethodSpec(
            key="unmask",
            label="unmask (ours)",
            summary="This project's own model: a linear face prior corrected by a mask-aware generator with hole-focused, perceptual and adversarial losses, composited into the known pixels; it averages the face's pass with its mirror image's.",
            reference="this project",
            trainable=True,
            uses_mask=True,
            factory=GAN,
            # v2: a gappy-PCA face prior inside the generator fills the hole; the gated U-Net
            # corrects it, trained with hole-weighted L1, SSIM and LPIPS on the composite, a global
            # and a mask-region discriminator (spectral norm), and a warm-up without the
            # adversarial terms. At inference the flip self-ensemble (200 val faces, v6 weights:
            # PSNR 28.825 -> 28.881 dB, LPIPS 0.0552 -> 0.0553).
            recipe=GanRecipe(
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
                self_ensemble=True,
            ),
        ),
    )
}


def ordered(keys: Iterable[str]) -> list[str]:
    """Method keys in the one display order: the registry's, then keys it does not know (sorted:
    a study may hold a method this checkout no longer has), then the `masked` floor and `real`."""
    present = set(keys)
    known = [k for k in METHODS if k in present]
    unknown = sorted(present - set(METHODS) - {MASKED, REAL})
    return known + unknown + [k for k in (MASKED, REAL) if k in present]


def parse(text: str) -> list[str]:
    """A command line's method list: "all", or comma-separated keys -> keys in registry order.

    The `masked` floor is dropped (evaluation always adds it). ValueError names unknown keys.
    """
    if text.strip() == "all":
        return list(METHODS)
    keys = {k.strip() for k in text.split(",")} - {"", MASKED}
    unknown = sorted(keys - set(METHODS))
    if unknown or not keys:
        raise ValueError(
            f"unknown method(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(METHODS)}"
        )
    return ordered(keys)


_LOADED: dict[tuple[str, bool], Method] = {}
_LOADING = threading.Lock()


def load_method(key: str, untrained: bool = False) -> Method:
    """The built method for `key`, loaded once per process and shared by every caller (read-only
    models; the one method cache). `untrained=True` gives seeded untrained networks for the
    trainable methods (tests, timing). Raises KeyError for an unknown key, WeightsError (from
    model.checkpoint) when shipped weights are missing or corrupt."""
    if key not in METHODS:
        raise KeyError(f"unknown method {key!r}; known: {', '.join(METHODS)}")
    spec = METHODS[key]
    untrained = untrained and spec.trainable
    with _LOADING:  # two first requests at once build it once
        if (key, untrained) not in _LOADED:
            _LOADED[key, untrained] = spec.load(untrained=True) if untrained else spec.load()
    return _LOADED[key, untrained]
