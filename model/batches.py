"""The training split in memory (uint8, on the GPU when there is one) and the batches drawn from it.

A batch is a pure function of (seed, step): the epoch's permutation, flips and colour jitter come
from generators seeded by the step, so a resumed run draws exactly the batches it would have drawn,
and every data-parallel process takes its own slice of the same global batch. With `fresh_masks`,
epoch e >= 1 uses new synthetic masks (model.masks.apply_mask, seeded by (seed, e, face)),
generated in the background during epoch e - 1.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.networks.landmark_regressor import MIRROR_68


@dataclass
class Batch:
    face: torch.Tensor  # (B, 3, H, W) in [-1, 1]: the unmasked target
    masked: torch.Tensor  # (B, 3, H, W) in [-1, 1]: the masked input
    mask: torch.Tensor  # (B, 1, H, W) in {0, 1}: 1 = covered by the face mask
    landmarks: torch.Tensor  # (B, 68, 2) (x, y) in [0, 1] on the face
    coin: (
        torch.Tensor
    )  # (B,) bool: a fair coin per face (the regressor trains on masked or unmasked)

    def __len__(self) -> int:
        return self.face.shape[0]


def chw_uint8(a: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W[, C]) uint8/bool -> (N, C, size, size) uint8 CPU tensor, area-downscaled in chunks."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    t = (t[..., None] if t.ndim == 3 else t).permute(0, 3, 1, 2).to(torch.uint8)
    if t.shape[2] == size:
        return t.contiguous()
    bool_like = a.dtype == bool
    out = []
    for chunk in t.split(256):
        x = chunk.float() * (255.0 if bool_like else 1.0)
        x = F.interpolate(x, size=(size, size), mode="area")
        if bool_like:  # a pixel partly covered by the mask counts as mask: known pixels stay known
            out.append((x > 0).to(torch.uint8))
        else:
            out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out).contiguous()


def _mask_chunk(
    args: tuple[np.ndarray, np.ndarray, list[int], str],
) -> tuple[np.ndarray, np.ndarray]:
    """Worker: new masks on faces (n, 256, 256, 3) with landmarks (n, 68, 2), one seed each."""
    from model.masks import apply_mask, cached_templates

    faces, landmarks, seeds, templates_dir = args
    templates = cached_templates(templates_dir) if templates_dir else None
    outs = [
        apply_mask(f, lm, seed=s, templates=templates)
        for f, lm, s in zip(faces, landmarks, seeds, strict=True)
    ]
    return np.stack([o.image for o in outs]), np.stack([o.seg for o in outs])


class FreshMasks:
    """Background generation of a whole new set of masked faces per epoch (deterministic seeds)."""

    def __init__(
        self, face: np.ndarray, landmarks: np.ndarray, seed: int, workers: int, templates: str = ""
    ):
        self.face, self.landmarks, self.seed, self.templates = face, landmarks, seed, templates
        if workers > 0:  # processes: mask drawing is Python/OpenCV work that holds the GIL
            self.pool: cf.Executor = cf.ProcessPoolExecutor(
                workers, mp_context=mp.get_context("spawn")
            )
        else:
            self.pool = cf.ThreadPoolExecutor(1)
        self.pending: dict[int, list[cf.Future]] = {}

    def seeds(self, epoch: int) -> list[int]:
        return [
            (self.seed * 1_000_003 + epoch * 100_003 + i) % 2**31 for i in range(len(self.face))
        ]

    def start(self, epoch: int) -> None:
        if epoch in self.pending:
            return
        seeds, n, chunk = self.seeds(epoch), len(self.face), 64
        self.pending[epoch] = [
            self.pool.submit(
                _mask_chunk,
                (
                    self.face[i : i + chunk],
                    self.landmarks[i : i + chunk],
                    seeds[i : i + chunk],
                    self.templates,
                ),
            )
            for i in range(0, n, chunk)
        ]

    def get(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        self.start(epoch)
        parts = [f.result() for f in self.pending.pop(epoch)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class PairSource:
    """Draws augmented batches of the in-memory split; `batch(step)` is this process's share."""

    def __init__(
        self,
        split: Any,  # model.data.PairedSplit (ids, face, masked, seg, landmarks)
        *,
        size: int,
        batch: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        flip: bool = True,
        jitter: float = 0.0,
        fresh_masks: bool = False,
        mask_workers: int = 0,
        mask_templates: str = "",
    ):
        if batch % world:
            raise ValueError(f"batch {batch} does not split evenly over {world} processes")
        n = len(split.face)
        if n < batch:
            raise ValueError(f"the training split has {n} faces, fewer than one batch of {batch}")
        self.n, self.size, self.batch, self.seed = n, size, batch, seed
        self.device, self.rank, self.world = device, rank, world
        self.flip, self.jitter = flip, jitter
        self.steps_per_epoch = n // batch  # drop the ragged end of each epoch
        src = np.asarray(split.face).shape[1]
        self.face = chw_uint8(np.asarray(split.face), size).to(device)  # (N, 3, S, S) uint8
        self.masked = chw_uint8(np.asarray(split.masked), size).to(device)
        self.seg = chw_uint8(np.asarray(split.seg, dtype=bool), size).to(
            device
        )  # (N, 1, S, S) {0, 1}
        # dlib points are pixel indices; (x + 0.5) / W puts them in [0, 1] with flips at 1 - x.
        lm = (np.asarray(split.landmarks, np.float32) + 0.5) / src
        self.landmarks = torch.from_numpy(lm).to(device)  # (N, 68, 2)
        self.mirror = torch.tensor(MIRROR_68, device=device)
        self.fresh = (
            FreshMasks(
                np.asarray(split.face),
                np.asarray(split.landmarks),
                seed,
                mask_workers,
                mask_templates,
            )
            if fresh_masks
            else None
        )
        self._order: tuple[int, torch.Tensor] = (-1, torch.empty(0))
        self._gen = torch.Generator(device=device)
        self.mask_epoch = 0  # epoch whose masks self.masked / self.seg hold (0 = the built pairs)

    def _use_masks_of(self, epoch: int) -> None:
        if self.fresh is None or epoch == self.mask_epoch or epoch == 0:
            return
        image, seg = self.fresh.get(epoch)
        self.masked = chw_uint8(image, self.size).to(self.device)
        self.seg = chw_uint8(seg.astype(bool), self.size).to(self.device)
        self.mask_epoch = epoch
        self.fresh.start(epoch + 1)

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's permutation of the split, on the device (computed once per epoch)."""
        if self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._order = (epoch, torch.randperm(self.n, generator=g).to(self.device))
        return self._order[1]

    def batch_at(self, step: int) -> Batch:
        """This process's share of global batch number `step` (0-based)."""
        epoch, j = divmod(step, self.steps_per_epoch)
        if self.fresh is not None:
            if epoch == 0 and j == 0:
                self.fresh.start(1)
            self._use_masks_of(epoch)
        dev, n = self.device, self.batch
        # Augmentation drawn on the device (no host-device copy, so no GPU sync per step) for the
        # whole global batch, then sliced: identical on every process.
        g = self._gen.manual_seed(self.seed * 104_729 + step)
        flips = torch.rand(n, generator=g, device=dev) < 0.5
        jit = (
            torch.rand(n, 3, generator=g, device=dev) * 2 - 1
        ) * self.jitter  # brightness, contrast, saturation
        coin = torch.rand(n, generator=g, device=dev) < 0.5
        share = slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)
        idx = self.order(epoch)[j * n : (j + 1) * n][share]
        flips, jit, coin = flips[share], jit[share], coin[share]
        face = self.face[idx].float() / 255  # (b, 3, S, S) in [0, 1]
        masked = self.masked[idx].float() / 255
        mask = self.seg[idx].float()
        lm = self.landmarks[idx].clone()
        if self.flip:
            fv = flips[:, None, None, None]
            face, masked, mask = (torch.where(fv, t.flip(-1), t) for t in (face, masked, mask))
            flipped = lm[:, self.mirror].clone()
            flipped[..., 0] = 1 - flipped[..., 0]
            lm = torch.where(flips[:, None, None], flipped, lm)
        if self.jitter > 0:
            face, masked = _colour_jitter(face, masked, jit)
        face, masked = face * 2 - 1, masked * 2 - 1
        if dev.type == "cuda":  # the networks are channels_last on CUDA
            face, masked, mask = (
                t.contiguous(memory_format=torch.channels_last) for t in (face, masked, mask)
            )
        return Batch(face, masked, mask, lm, coin)

    def close(self) -> None:
        if self.fresh is not None:
            self.fresh.close()


def _colour_jitter(
    face: torch.Tensor, masked: torch.Tensor, jit: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same brightness, contrast and saturation change on target and input (pixelwise, with the
    target's mean grey as the contrast pivot), so known pixels stay equal between the two."""
    b, c, s = (1 + jit[:, i, None, None, None] for i in range(3))
    pivot = face.mean(dim=(1, 2, 3), keepdim=True)

    def apply(x: torch.Tensor) -> torch.Tensor:
        x = x * b
        x = (x - pivot) * c + pivot
        grey = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        return (grey + (x - grey) * s).clamp(0, 1)

    return apply(face), apply(masked)
