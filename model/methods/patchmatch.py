"""PatchMatch inpainting (Barnes et al. 2009, SIGGRAPH) from the `pypatchmatch` package: the hole is
filled with patches copied from the rest of the face, nearest neighbours found by randomised search.
"""

from __future__ import annotations

import threading

import numpy as np

from model.methods.base import ImageMethod
from model.methods.registry import MethodSpec

# The C library draws from one global random state: calls are serialised and seeded per call, so
# the same face always gives the same result, whatever other requests run at the same time.
_LOCK = threading.Lock()


class PatchMatchMethod(ImageMethod):
    def __init__(self, spec: MethodSpec, patch_size: int = 3, seed: int = 0):
        from patchmatch import patch_match  # imported here: loading the C library takes a moment

        self.spec, self.patch_size, self.seed = spec, patch_size, seed
        self._pm = patch_match

    def _fill(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        from model.faces import inside_from_fill

        if not hole.any():
            return image.copy()
        # Where the aligned square runs past the photo (the flat grey fill) there is nothing to
        # copy: those pixels are kept out of the search (pypatchmatch's global_mask), or flat grey
        # patches would be pasted into the face.
        unknown = ~inside_from_fill(image) & ~hole
        extra = {"global_mask": unknown.astype(np.uint8) * 255} if unknown.any() else {}
        with _LOCK:
            self._pm.set_random_seed(self.seed)
            out = self._pm.inpaint(
                image, hole.astype(np.uint8) * 255, patch_size=self.patch_size, **extra
            )
        return np.asarray(out, dtype=np.uint8)


def build(spec: MethodSpec, patch_size: int = 3, **kw) -> PatchMatchMethod:
    """`kw` (device, untrained, ...) is accepted and ignored: PatchMatch has no network."""
    return PatchMatchMethod(spec, patch_size=patch_size)
