"""The one list of inpainting methods (`METHODS`): demo, evaluation, study and analysis iterate it.

Keys are stable slugs used in file names, database rows and table columns. This module imports
nothing heavy: each spec names the factory that builds the method, imported only when loaded.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.methods.base import Method


@dataclass(frozen=True)
class MethodSpec:
    key: str
    label: str
    summary: str  # one or two sentences for the demo's About tab and the README
    reference: str  # the paper it follows
    trainable: bool  # has weights made by `unmask train`
    uses_mask: bool  # reads the mask (as an input channel or to composite)
    factory: str  # "module:function" returning a Method; imported lazily

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
            factory="model.methods.gan:build",
        ),
        MethodSpec(
            key="pix2pix_mask",
            label="Pix2Pix + mask",
            summary="Pix2Pix with the binary mask as a fourth input channel (Ye's 'train B').",
            reference="Ye 2022 (train B)",
            trainable=True,
            uses_mask=True,
            factory="model.methods.gan:build",
        ),
        MethodSpec(
            key="dilated_se",
            label="Dilated-SE GAN",
            summary="U-Net with 5 skips, dilated bottleneck (2/4/8/16), squeeze-excitation blocks, instance norm and an SSIM loss (Ye's 'train C').",
            reference="Din et al. 2020; Ye 2022 (train C)",
            trainable=True,
            uses_mask=True,
            factory="model.methods.gan:build",
        ),
        MethodSpec(
            key="landmark",
            label="Landmark + masked-pixel loss",
            summary="Pix2Pix plus a jaw-landmark coordinate loss (C1) and a masked-region pixel MSE (C2).",
            reference="Yoshihashi, Ienaga & Sugimoto, VISAPP 2022",
            trainable=True,
            uses_mask=True,
            factory="model.methods.gan:build",
        ),
        MethodSpec(
            key="unmask",
            label="unmask (ours)",
            summary="This project's own model: mask-aware generator with hole-focused, perceptual and adversarial losses, composited into the known pixels.",
            reference="this project",
            trainable=True,
            uses_mask=True,
            factory="model.methods.gan:build",
        ),
    )
}


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
