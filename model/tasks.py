"""What each trainable key optimises, behind the one interface the trainer drives (`TASKS`).

A task owns its networks and optimisers and knows its losses; the trainer owns data, devices,
data parallelism, checkpoints, validation and logs. `train_nets` holds the networks as the
trainer wrapped them (DistributedDataParallel or not); `nets` holds the plain modules.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model import losses
from model.batches import Batch
from model.methods.gan import (
    RECIPES,
    build_generator,
    condition,
    deliver,
    generate,
    input_channels,
)
from model.networks import build_network
from model.run_folder import AVERAGED
from model.train_config import TrainConfig

Amp = Callable[[], contextlib.AbstractContextManager]


class Task:
    key: str
    export_net: str  # the network shipped as <key>.safetensors
    nets: dict[str, nn.Module]
    train_nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]

    def __init__(self, cfg: TrainConfig, device: torch.device, amp: Amp = contextlib.nullcontext):
        self.cfg, self.device, self.amp = cfg, device, amp
        self.key = cfg.method

    def _optimisers(self) -> None:
        self.train_nets = dict(self.nets)
        self.optimizers = {
            name: torch.optim.Adam(
                net.parameters(), lr=self.cfg.lr, betas=(self.cfg.beta1, self.cfg.beta2)
            )
            for name, net in self.nets.items()
        }

    def prepare(self, train_faces: torch.Tensor) -> None:
        """Before the first step of a fresh run: fit what has a closed form (a gappy-PCA prior) on
        the training faces (N, 3, S, S) uint8. Resumed runs get it back from the checkpoint."""
        from model.networks.gappy_pca import GappyPCA, fit_gappy_pca

        for net in self.nets.values():
            for module in net.modules():
                if isinstance(module, GappyPCA):
                    fitted = fit_gappy_pca(train_faces, module.cfg, seed=self.cfg.seed)
                    module.load_state_dict(fitted.state_dict())

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, pred: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-sample validation metrics, each (B,)."""
        raise NotImplementedError

    def grid_rows(self, pred: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
        """Rows of the sample grid, each (B, 3, H, W) in [-1, 1]."""
        raise NotImplementedError


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


class GanTask(Task):
    """Any registry GAN: generator + PatchGAN discriminator(s), losses from its recipe."""

    export_net = "generator"

    def __init__(self, cfg: TrainConfig, device: torch.device, amp: Amp = contextlib.nullcontext):
        super().__init__(cfg, device, amp)
        self.recipe = RECIPES[cfg.method]
        self.weights = {**self.recipe.losses, **cfg.losses}
        losses.check_terms(cfg.method, self.weights, self.recipe.discriminators)
        c = input_channels(self.recipe)
        self.nets = {"generator": build_generator(cfg.method, cfg.networks)}
        for name, opts in self.recipe.discriminators.items():
            d_opts = {**cfg.networks.get("patchgan", {}), **opts, "in_channels": c + 3}
            self.nets[f"d_{name}"] = build_network("patchgan", **d_opts)
        for net in self.nets.values():
            net.to(device)
        self._optimisers()
        if cfg.ema:  # Polyak averaging of the generator: a copy that validates and exports
            self.export_net = AVERAGED.format("generator")
            self.nets[self.export_net] = copy.deepcopy(self.nets["generator"]).requires_grad_(False)
        self.lpips = None
        if self.weights.get("perceptual"):
            from model.lpips import load_lpips

            self.lpips = load_lpips(device)
        self.regressor = load_regressor(cfg, device) if self.weights.get("c1") else None

    def adversarial_on(self, step: int) -> bool:
        return not (self.recipe.warmup and step < self.cfg.warmup_steps)

    def _weight(self, name: str, mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        # The mask-region discriminator is scored only on patches that overlap the hole.
        return F.adaptive_max_pool2d(mask, logits.shape[-2:]) if name == "local" else None

    def _hole(self, batch: Batch) -> torch.Tensor:
        """The hole the generator is given: the mask, grown by grow_px on the faces whose coin is up."""
        if not self.recipe.grow_px:
            return batch.mask
        k = max(1, round(self.recipe.grow_px * batch.mask.shape[-1] / 256))
        grown = F.max_pool2d(batch.mask, 2 * k + 1, stride=1, padding=k)
        return torch.where(batch.coin[:, None, None, None], grown, batch.mask)

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        w, r = self.weights, self.recipe
        hole = self._hole(batch)  # (B, 1, H, W)
        cond = condition(r, batch.masked, hole)  # (B, 3|4, H, W)
        with self.amp():
            fake = generate(r, self.train_nets["generator"], batch.masked, hole)
        logs: dict[str, torch.Tensor] = {}
        adv = self.adversarial_on(step)
        if adv:  # 1. discriminators: (BCE(D(c, G(c)), 0) + BCE(D(c, x), 1)) / 2, Ye Eq. 4
            for name in r.discriminators:
                d = self.train_nets[f"d_{name}"]
                with self.amp():
                    lf = d(torch.cat([cond, fake.detach()], 1)).float()
                    lr = d(torch.cat([cond, batch.face], 1)).float()
                wt = self._weight(name, hole, lf)
                loss_d = 0.5 * (
                    losses.adversarial(lf, False, wt) + losses.adversarial(lr, True, wt)
                )
                _step(self.optimizers[f"d_{name}"], loss_d)
                logs[f"d_{name}"] = loss_d.detach()
        # 2. generator: weighted sum of its recipe's terms (names from losses.LOSSES).
        terms: dict[str, torch.Tensor] = {}
        with self.amp():
            if adv:
                for name in r.discriminators:
                    # The plain module: these gradients are only wanted for the generator.
                    lf = self.nets[f"d_{name}"](torch.cat([cond, fake], 1)).float()
                    terms[losses.adversarial_term(name)] = losses.adversarial(
                        lf, True, self._weight(name, hole, lf)
                    )
            given = losses.Terms(fake, batch.face, hole, self.lpips, self.regressor)
            for name in w:
                if name in losses.LOSSES:
                    terms[name] = losses.LOSSES[name](given)
        total = sum(w[k] * v for k, v in terms.items())
        _step(self.optimizers["generator"], total)
        if self.cfg.ema:
            self._update_average()
        logs["g"] = total.detach()
        logs.update({f"g_{k}": v.detach() for k, v in terms.items()})
        return logs

    @torch.no_grad()
    def _update_average(self) -> None:
        """average <- decay * average + (1 - decay) * weights, every step (the exponential moving
        average of Polyak averaging, as Karras et al. 2018 and Yazici et al. 2019 use for GAN
        generators); buffers (the fitted prior) are copied."""
        avg, net = self.nets[self.export_net], self.nets["generator"]
        for a, p in zip(avg.parameters(), net.parameters(), strict=True):
            a.lerp_(p, 1 - self.cfg.ema)
        for a, b in zip(avg.buffers(), net.buffers(), strict=True):
            a.copy_(b)

    def prepare(self, train_faces: torch.Tensor) -> None:
        """The generator's closed-form parts are fitted once; its average starts as a copy."""
        average = self.nets.pop(self.export_net) if self.cfg.ema else None
        super().prepare(train_faces)
        if average is not None:
            average.load_state_dict(self.nets["generator"].state_dict())
            self.nets[self.export_net] = average

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        with self.amp():
            return (
                deliver(self.recipe, self.nets[self.export_net], batch.masked, batch.mask)
                .float()
                .clamp(-1, 1)
            )

    def metrics(self, pred: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        from model.metrics import BATCH_METRICS

        # Logged (log.jsonl, model card) under each row's key: mse_mask, psnr, ssim, lpips.
        return {m.key: m.batch(pred, batch.face, batch.mask) for m in BATCH_METRICS}

    def grid_rows(self, pred: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
        return [batch.masked, pred, batch.face]


class EigenfaceTask(Task):
    """The eigenface prior: fitted in closed form by `prepare` (randomized SVD); no steps needed."""

    export_net = "gappy_pca"

    def __init__(self, cfg: TrainConfig, device: torch.device, amp: Amp = contextlib.nullcontext):
        super().__init__(cfg, device, amp)
        self.nets = {"gappy_pca": build_network("gappy_pca", **cfg.networks.get("gappy_pca", {}))}
        self.nets["gappy_pca"].to(device)
        self.train_nets, self.optimizers = dict(self.nets), {}

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        return {}  # nothing to optimise: the basis is fitted once by `prepare`

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        from model.methods.base import keep_known

        return keep_known(
            self.nets["gappy_pca"](batch.masked, batch.mask), batch.masked, batch.mask
        )

    metrics = GanTask.metrics

    def grid_rows(self, pred: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
        return [batch.masked, pred, batch.face]


class SegmenterTask(Task):
    """Masked face -> mask logits; BCE + Dice. Validation: IoU at probability 0.5."""

    export_net = "segmenter"

    def __init__(self, cfg: TrainConfig, device: torch.device, amp: Amp = contextlib.nullcontext):
        super().__init__(cfg, device, amp)
        self.nets = {
            "segmenter": build_network(
                "unet_segmenter", **cfg.networks.get("unet_segmenter", {})
            ).to(device)
        }
        self._optimisers()

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        with self.amp():
            logits = self.train_nets["segmenter"](batch.masked).float()
        loss = losses.segmentation_loss(logits, batch.mask)
        _step(self.optimizers["segmenter"], loss)
        return {"loss": loss.detach()}

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        with self.amp():
            return torch.sigmoid(self.nets["segmenter"](batch.masked).float())  # (B, 1, H, W)

    def metrics(self, pred: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        p, t = pred > 0.5, batch.mask > 0.5
        inter = (p & t).sum((1, 2, 3)).float()
        union = (p | t).sum((1, 2, 3)).float()
        return {"iou": torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))}

    def grid_rows(self, pred: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
        return [
            batch.masked,
            pred.expand(-1, 3, -1, -1) * 2 - 1,
            batch.mask.expand(-1, 3, -1, -1) * 2 - 1,
        ]


class LandmarkRegressorTask(Task):
    """Face (masked or not, a coin per face) -> 68 points; L1 on [0, 1] coordinates."""

    export_net = "landmark_regressor"

    def __init__(self, cfg: TrainConfig, device: torch.device, amp: Amp = contextlib.nullcontext):
        super().__init__(cfg, device, amp)
        net = build_network("landmark_regressor", **cfg.networks.get("landmark_regressor", {}))
        self.nets = {"landmark_regressor": net.to(device)}
        self._optimisers()

    @staticmethod
    def _input(batch: Batch) -> torch.Tensor:
        return torch.where(batch.coin[:, None, None, None], batch.masked, batch.face)

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        with self.amp():
            pred = self.train_nets["landmark_regressor"](self._input(batch)).float()
        loss = losses.landmark_loss(pred, batch.landmarks)
        _step(self.optimizers["landmark_regressor"], loss)
        return {"loss": loss.detach()}

    @torch.no_grad()
    def predict(self, batch: Batch) -> torch.Tensor:
        with self.amp():
            return self.nets["landmark_regressor"](
                batch.masked
            ).float()  # on masked faces: the hard case

    def metrics(self, pred: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        err = (pred - batch.landmarks).norm(dim=-1)  # (B, 68) in face widths
        return {
            "error_px": err.mean(1) * batch.face.shape[-1],
            "jaw_error_px": err[:, :17].mean(1) * batch.face.shape[-1],
        }

    def grid_rows(self, pred: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
        return [_draw_points(batch.masked, pred), _draw_points(batch.face, batch.landmarks)]


def _draw_points(images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Copy of images (B, 3, H, W) with each (x, y) in [0, 1] of points (B, K, 2) painted green."""
    out = images.clone()
    b, _, h, w = out.shape
    xs = (points[..., 0] * w).long().clamp(0, w - 1)
    ys = (points[..., 1] * h).long().clamp(0, h - 1)
    bi = torch.arange(b, device=out.device)[:, None].expand_as(xs)
    out[bi, 0, ys, xs], out[bi, 1, ys, xs], out[bi, 2, ys, xs] = -1.0, 1.0, -1.0
    return out


def load_regressor(cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The frozen landmark regressor for C1: `cfg.regressor` (.safetensors with its card beside it,
    or a training checkpoint .pt), else the shipped weights in `cfg.weights_dir`."""
    from model.checkpoint import load_weights
    from model.networks import from_architecture
    from model.run_folder import checkpoint_network, load_checkpoint

    if cfg.regressor.endswith(".pt"):
        net = checkpoint_network(load_checkpoint(cfg.regressor), "landmark_regressor")
    else:
        where = Path(cfg.regressor).parent if cfg.regressor else cfg.weights_dir
        state, card = load_weights("landmark_regressor", where)
        net = from_architecture(card["architecture"])
        net.load_state_dict(state)
    net.to(device).eval().requires_grad_(False)
    return net


TASKS: dict[str, type[Task]] = {
    **dict.fromkeys(RECIPES, GanTask),
    "eigenface": EigenfaceTask,
    "segmenter": SegmenterTask,
    "landmark_regressor": LandmarkRegressorTask,
}
