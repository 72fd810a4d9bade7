"""`unmask train`: one trainer for every GAN method, the mask segmenter and the landmark regressor.

The trainer knows nothing about any model: `model.tasks.TASKS[key]` builds the networks, optimisers
and losses. It owns the rest: the in-memory split, data parallelism (torchrun -> DDP; gloo on CPU),
bf16 autocast + channels_last on CUDA, atomic checkpoints that resume exactly, periodic validation
with a sample grid, the JSONL log, and the export of shipped weights with their card.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from model.run_folder import RunFolder, checkpoint_network, load_checkpoint
from model.train_config import (
    AUXILIARY,
    TrainConfig,
    add_config_arguments,
    config_overrides,
    parse_budget,
    resolve,
    to_toml,
)


def trainable_keys() -> list[str]:
    from model.methods.registry import METHODS

    return [k for k, s in METHODS.items() if s.trainable] + list(AUXILIARY)


# --- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The TrainConfig fields as options (model.train_config.add_config_arguments), then what is
    not part of a run's config: the mode (--resume, --export), the device, the progress bar."""
    parser.epilog = (
        "A run writes runs/<method>-<preset>/ (or --run-dir): config.toml, log.jsonl, "
        "checkpoints/, samples/ and, at the end, weights/<key>.safetensors + card; "
        "`unmask promote --run DIR --data DIR` ships it into model/weights when it is better. "
        "Options not given take the preset's value, else the default shown."
    )
    parser.add_argument("--method", required=True, choices=trainable_keys(), help="what to train")
    add_config_arguments(parser)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's latest checkpoint"
    )
    parser.add_argument(
        "--export",
        dest="export_only",
        action="store_true",
        help="only export the run's latest checkpoint into <run>/weights (then `unmask promote`)",
    )
    parser.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    given = config_overrides(args)
    preset = given.pop("preset") or "compact"
    given["run_dir"] = str(given["run_dir"] or RunFolder.default(args.method, preset).path)
    if args.export_only:
        try:
            latest = RunFolder(given["run_dir"]).latest_checkpoint()
        except FileNotFoundError as e:
            raise SystemExit(f"unmask train: nothing to export: {e}") from None
        path = export_checkpoint(latest, note=args.note)
        print(f"exported {path}; ship it with `unmask promote --run {given['run_dir']} --data DIR`")
        return 0
    if not given["data"]:
        raise SystemExit(
            "unmask train: --data DIR is required (a dataset from `unmask data build`)"
        )
    given["data"] = str(Path(given["data"]).resolve())
    try:
        cfg = resolve(args.method, preset, **given)
        budget_s, budget_images = parse_budget(cfg.budget)
    except (ValueError, FileNotFoundError) as e:  # a bad preset or --budget: say so, no traceback
        raise SystemExit(f"unmask train: {e}") from None
    if not 0 <= cfg.lr_decay <= 1:
        raise SystemExit(
            f"unmask train: --lr-decay {cfg.lr_decay} is a fraction of the run: from 0 to 1"
        )
    if cfg.lr_decay and budget_s and not budget_images and given.get("steps") is None:
        # The schedule is planned in steps; a clock alone would plan the preset's steps, which the
        # run stops far short of, so the rate would never fall.
        raise SystemExit(
            f"unmask train: --lr-decay plans its decay over the run's steps, and --budget "
            f"{cfg.budget} is a wall clock only: the run would plan the preset's {cfg.steps:,} "
            "steps and stop before the decay begins. Add --steps (about what the time allows) "
            f"or an images budget ({cfg.budget}+40000img)"
        )
    if not 0 <= cfg.ema < 1:
        raise SystemExit(f"unmask train: --ema {cfg.ema} is a decay per step: from 0 to below 1")
    for name, value, ok, rule in (
        ("--steps", cfg.steps, cfg.steps >= 0, "0 (the closed-form fit alone: eigenface) or more"),
        ("--batch", cfg.batch, cfg.batch >= 1, "at least 1"),
        ("--lr", cfg.lr, cfg.lr > 0, "above 0"),
        ("--size", cfg.size, cfg.size >= 16, "at least 16 (pixels)"),
        ("--train-limit", cfg.train_limit, cfg.train_limit >= 0, "0 (all) or more"),
        ("--val-limit", cfg.val_limit, cfg.val_limit >= 0, "0 (all) or more"),
    ):
        if not ok:
            raise SystemExit(f"unmask train: {name} {value} must be {rule}")
    if cfg.budget.strip() and not (budget_s or budget_images):
        raise SystemExit(f"unmask train: --budget {cfg.budget} is no budget: give e.g. 30m")
    from model.methods.gan import RECIPES

    if cfg.ema and cfg.method not in RECIPES:
        raise SystemExit(f"unmask train: --ema averages a GAN's generator; {cfg.method} has none")
    from model.data import load_split

    rank, _ = _dist_init()
    train_split = load_split(cfg.data, "train", cfg.train_limit or None)
    val_split = load_split(cfg.data, "val", cfg.val_limit or None)
    if len(train_split) < cfg.batch:
        raise SystemExit(
            f"unmask train: the training split has {len(train_split)} faces, fewer than one "
            f"batch of {cfg.batch}: lower --batch or raise --train-limit"
        )
    summary = train(
        cfg,
        train_split,
        val_split,
        device=args.device,
        resume=args.resume,
        progress=not args.no_progress,
    )
    if rank == 0:
        print(json.dumps(summary, indent=2, default=str))
        if "weights" in summary:
            print(
                f"weights exported into the run folder; to ship them: "
                f"unmask promote --run {summary['run_dir']} --data {args.data}"
            )
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


# --- processes and devices -----------------------------------------------------------------------


def _dist_init() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun (RANK/WORLD_SIZE set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _pick_device(device: str | None, rank: int) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(
            "cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
        )
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device, world: int) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "device": device.type,
        "name": name,
        "processes": world,
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": str(torch.__version__),
    }


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic on this CPU (AVX512-BF16 or AMX): autocast is then ~2x faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" or cpu_has_bf16() else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    return precision


# --- checkpoints -----------------------------------------------------------------------------------


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# --- validation --------------------------------------------------------------------------------------


def _fixed_batches(split: Any, cfg: TrainConfig, device: torch.device, limit: int, per_rank: int):
    """Validation batches: the first `limit` faces, unaugmented, in order."""
    from model.batches import Batch, chw_uint8

    n = min(limit, len(split.face)) if limit else len(split.face)
    src = split.face.shape[1]
    face = chw_uint8(split.face[:n], cfg.size).to(device).float() / 127.5 - 1
    masked = chw_uint8(split.masked[:n], cfg.size).to(device).float() / 127.5 - 1
    mask = chw_uint8(split.seg[:n].astype(bool), cfg.size).to(device).float()
    lm = torch.from_numpy((split.landmarks[:n].astype("float32") + 0.5) / src).to(device)
    coin = torch.zeros(n, dtype=torch.bool, device=device)
    return [
        Batch(
            face[i : i + per_rank],
            masked[i : i + per_rank],
            mask[i : i + per_rank],
            lm[i : i + per_rank],
            coin[i : i + per_rank],
        )
        for i in range(0, n, per_rank)
    ]


def validate(task, batches, sample_path: Path | None, grid_n: int = 8) -> dict[str, float]:
    """Mean of the task's per-face metrics over the validation batches; writes a sample grid PNG."""
    for net in task.nets.values():
        net.eval()
    sums: dict[str, float] = {}
    count = 0
    first = None
    with torch.no_grad():
        for b in batches:
            pred = task.predict(b)
            for k, v in task.metrics(pred, b).items():
                v = v.float()
                v = v[torch.isfinite(v)]
                sums[k] = sums.get(k, 0.0) + float(v.sum())
                sums[f"_{k}_n"] = sums.get(f"_{k}_n", 0.0) + v.numel()
            count += len(b)
            if first is None:
                first = (pred, b)
    for net in task.nets.values():
        net.train()
    if sample_path is not None and first is not None:
        save_grid([r[:grid_n] for r in task.grid_rows(*first)], sample_path)
    return {k: sums[k] / max(sums[f"_{k}_n"], 1) for k in sums if not k.startswith("_")}


def save_grid(rows: list[torch.Tensor], path: Path) -> None:
    """Rows of (B, 3, H, W) images in [-1, 1] -> one PNG, one row per tensor."""
    from PIL import Image

    grid = torch.cat(
        [torch.cat(list(r.float().clamp(-1, 1)), dim=2) for r in rows], dim=1
    )  # (3, rows*H, B*W)
    arr = ((grid + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(arr).save(tmp)
    os.replace(tmp, path)


# --- the loop --------------------------------------------------------------------------------------------


class _Session:
    """What every step of one run shares: the config, where it runs (rank of world, device,
    precision), the task, the run folder, the log, and the step/clock state a checkpoint keeps."""

    def __init__(self, cfg: TrainConfig, device: str | torch.device | None):
        self.cfg = cfg
        self.rank, self.world = _dist_init()
        self.dev = _pick_device(str(device) if device is not None else None, self.rank)
        if cfg.batch % self.world:
            raise ValueError(f"batch {cfg.batch} must split evenly over {self.world} processes")
        self.per_rank = cfg.batch // self.world  # each process's share of the global batch
        if self.dev.type == "cuda":  # TF32 matmuls and autotuned convolutions: free speed on GPUs
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.precision = resolve_precision(cfg.precision, self.dev)
        self.budget_s, self.budget_images = parse_budget(cfg.budget)
        # The steps the learning-rate schedule plans for: the images budget's, else --steps.
        self.planned_steps = cfg.steps
        if self.budget_images:
            self.planned_steps = min(cfg.steps, -(-self.budget_images // cfg.batch))
        self.hw = hardware(self.dev, self.world)
        self.run = (
            RunFolder(cfg.run_dir) if cfg.run_dir else RunFolder.default(cfg.method, cfg.preset)
        )
        self.log_file = None  # log.jsonl, open on rank 0 during the loop
        self.step, self.wall_before, self.last_val = 0, 0.0, {}
        self.validated_at = -1

    def amp(self) -> contextlib.AbstractContextManager:
        """The autocast context of every forward pass (bf16), or none (fp32)."""
        if self.precision == "bf16":
            return torch.autocast(self.dev.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def build_task(self):
        """The task's networks and optimisers: identical initialisation on every process (seed),
        then a per-process RNG stream (dropout, augmentation draws that are not seeded per face)."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        from model.tasks import TASKS

        torch.manual_seed(self.cfg.seed)
        task = TASKS[self.cfg.method](self.cfg, self.dev, self.amp)
        if self.precision == "bf16":  # channels_last is what makes bf16 convolutions fast
            for net in task.nets.values():
                net.to(memory_format=torch.channels_last)
        if self.world > 1:  # gradients averaged over processes; task.nets stay the plain modules
            ids = [self.dev.index] if self.dev.type == "cuda" else None
            # Only the optimised networks (not an averaged copy, which has no gradients).
            task.train_nets = {n: DDP(task.nets[n], device_ids=ids) for n in task.optimizers}
        torch.manual_seed(self.cfg.seed * 1000 + self.rank + 1)
        return task

    def start(self, task, train_faces: torch.Tensor, resume: bool) -> None:
        """Fresh (fit the closed-form parts on the training faces (N, 3, S, S) uint8; the fit's
        time counts against the budget and the card) or from the latest checkpoint (networks,
        optimisers, step, clock, last validation, each process's RNG)."""
        existing = self.run.checkpoints()
        if existing and not resume:
            raise SystemExit(
                f"{self.run.path} already has checkpoints: pass --resume, or choose another --run-dir"
            )
        if resume and not existing:
            raise SystemExit(
                f"unmask train: nothing to resume in {self.run.path} (no checkpoints/step_*.pt): "
                "drop --resume to start a new run there"
            )
        if existing:
            ckpt = load_checkpoint(existing[-1][1], self.dev)
            if ckpt.get("key", self.cfg.method) != self.cfg.method:
                raise SystemExit(
                    f"unmask train: {self.run.path} holds a {ckpt['key']} run, not "
                    f"{self.cfg.method}: pass --method {ckpt['key']}, or choose another --run-dir"
                )
            for name, net in task.nets.items():
                net.load_state_dict(ckpt["nets"][name])
            for name, opt in task.optimizers.items():
                opt.load_state_dict(ckpt["optimizers"][name])
            self.step, self.wall_before = ckpt["step"], ckpt["wall_s"]
            self.last_val = ckpt.get("val", {})
            if len(ckpt["rng"]) == self.world:  # same process count: the exact RNG streams
                rng = ckpt["rng"][self.rank]
                _set_rng_state({k: v.cpu() for k, v in rng.items()}, self.dev)
        else:
            t_prep = time.perf_counter()
            task.prepare(train_faces.to(self.dev))
            self.wall_before = time.perf_counter() - t_prep
        if self.rank == 0:
            self.run.create(to_toml(self.cfg))

    def write_log(self, kind: str, step: int, wall: float, values: dict[str, float]) -> None:
        """One log.jsonl row (rank 0 only)."""
        if self.log_file is None:
            return
        row = {"kind": kind, "step": step, "images_seen": step * self.cfg.batch}
        self.log_file.write(json.dumps({**row, "wall_s": round(wall, 3), **values}) + "\n")
        self.log_file.flush()

    def out_of_budget(self, step: int, wall: float) -> bool:
        over = (self.budget_s and wall >= self.budget_s) or (
            self.budget_images and step * self.cfg.batch >= self.budget_images
        )
        if self.world > 1:  # every process stops at the same step
            flag = torch.tensor([1.0 if over else 0.0], device=self.dev)
            dist.all_reduce(flag)
            over = bool(flag.item())
        return bool(over)

    def validate(self, task, batches, step: int, wall: float, source: str) -> None:
        """Rank 0 scores the fixed validation faces and draws the sample grid; others wait."""
        self.validated_at = step
        if self.rank == 0:
            self.last_val = validate(task, batches, self.run.sample_path(step))
            self.write_log("val", step, wall, {"val_source": source, **self.last_val})
        if self.world > 1:
            dist.barrier()

    def checkpoint(self, task, step: int, wall: float, faces: dict[str, int]) -> None:
        """Everything to resume exactly (RunFolder's `Checkpoint`); every process's RNG state is
        gathered so a resumed data-parallel run continues each stream where it stopped."""
        rng = _rng_state(self.dev)
        rngs: list = [rng]
        if self.world > 1:
            rngs = [None] * self.world
            dist.all_gather_object(rngs, {k: v.cpu() for k, v in rng.items()})
        if self.rank != 0:
            return
        self.run.save_checkpoint(
            {
                "key": self.cfg.method,
                "step": step,
                "images_seen": step * self.cfg.batch,
                "wall_s": wall,
                "world": self.world,
                "config": asdict(self.cfg),
                "architectures": {n: net.architecture for n, net in task.nets.items()},
                "nets": {n: net.state_dict() for n, net in task.nets.items()},
                "optimizers": {n: o.state_dict() for n, o in task.optimizers.items()},
                "rng": rngs,
                "val": self.last_val,
                "hardware": self.hw,
                "precision": self.precision,
                "faces": faces,
            },
            keep=self.cfg.keep_checkpoints,
        )


def learning_rate(cfg: TrainConfig, planned_steps: int, step: int) -> float:
    """The learning rate of step `step` (0-based) of a run of `planned_steps`: `cfg.lr`, falling
    linearly to zero over the last `cfg.lr_decay` of the run (Isola et al. 2017's pix2pix: constant,
    then linear decay to zero; there over epochs, here over steps)."""
    decay = round(cfg.lr_decay * planned_steps)
    if decay <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (planned_steps - step) / decay)


def set_learning_rate(task, cfg: TrainConfig, planned_steps: int, step: int) -> None:
    lr = learning_rate(cfg, planned_steps, step)
    for opt in task.optimizers.values():
        for group in opt.param_groups:
            group["lr"] = lr


def train(
    cfg: TrainConfig,
    train_split: Any,
    val_split: Any | None = None,
    *,
    device: str | torch.device | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `cfg.method` for `cfg.steps` steps (resuming from the run folder's latest checkpoint
    when `resume`); returns a summary (steps, images seen, wall time, last validation metrics)."""
    from tqdm import tqdm

    from model.batches import PairSource

    # 1. Where: processes (torchrun -> DDP, gloo on CPU), device, precision, budget, run folder.
    s = _Session(cfg, device)

    # 2. What: the task's networks and optimisers, initialised identically on every process.
    task = s.build_task()

    # 3. From where: a fresh run (closed-form parts fitted) or the latest checkpoint.
    s.start(task, torch.from_numpy(train_split.face).permute(0, 3, 1, 2), resume)

    # 4. Data: the split stays in memory as uint8 (N, H, W, 3); each step draws this process's
    #    share of a global batch, augmented and (fresh_masks) newly masked, as float (B, 3, S, S).
    #    Validation: the first val_limit faces, unaugmented, in fixed batches (train faces when
    #    there is no val split, and the log says so).
    source = PairSource(
        train_split,
        size=cfg.size,
        batch=cfg.batch,
        seed=cfg.seed,
        device=s.dev,
        rank=s.rank,
        world=s.world,
        flip=cfg.flip,
        jitter=cfg.jitter,
        fresh_masks=cfg.fresh_masks,
        mask_workers=cfg.mask_workers,
        mask_templates=cfg.mask_templates,
    )
    has_val = val_split is not None and len(val_split.face) > 0
    val_source = "val" if has_val else "train"
    val_batches = _fixed_batches(
        val_split if has_val else train_split, cfg, s.dev, cfg.val_limit, s.per_rank
    )
    faces = {"train": len(train_split.face), "val": len(val_split.face) if has_val else 0}

    # 5. The loop: step, log, validate, checkpoint, on their own periods; the last step (or the
    #    one where the budget runs out) does all three, so a stopped run is always complete.
    s.log_file = open(s.run.log_path, "a") if s.rank == 0 else None
    t0 = time.perf_counter()
    wall = s.wall_before
    bar = tqdm(
        total=cfg.steps,
        initial=s.step,
        disable=not progress or s.rank != 0,
        desc=f"train {cfg.method}",
        unit="step",
    )
    step, stopped_by_budget = s.step, False
    try:
        for step in range(s.step + 1, cfg.steps + 1):
            set_learning_rate(task, cfg, s.planned_steps, step - 1)
            logs = task.train_step(source.batch_at(step - 1), step - 1)  # name -> 0-d tensor
            bar.update(1)
            wall = s.wall_before + time.perf_counter() - t0
            stopped_by_budget = bool(s.budget_s or s.budget_images) and s.out_of_budget(step, wall)
            last = step == cfg.steps or stopped_by_budget
            if s.log_file is not None and (step % cfg.log_every == 0 or last):
                vals = {k: round(float(v), 6) for k, v in logs.items()}  # the only host sync
                s.write_log("train", step, wall, vals)
                bar.set_postfix({k: f"{v:.3g}" for k, v in vals.items() if not k.startswith("g_")})
            if (cfg.val_every and step % cfg.val_every == 0) or last:
                s.validate(task, val_batches, step, wall, val_source)
            if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or last:
                s.checkpoint(task, step, wall, faces)
            if stopped_by_budget:
                break
        if s.validated_at != step:  # no step ran (a closed-form task, or already done): report
            wall = s.wall_before + time.perf_counter() - t0
            s.validate(task, val_batches, step, wall, val_source)
            s.checkpoint(task, step, wall, faces)
    finally:
        bar.close()
        source.close()
        if s.log_file is not None:
            s.log_file.close()

    # 6. Export the shipped network with its card (rank 0, a finished or budget-stopped run).
    wall = s.wall_before + time.perf_counter() - t0
    summary = {
        "method": cfg.method,
        "steps": step,
        "images_seen": step * cfg.batch,
        "wall_s": round(wall, 2),
        "run_dir": str(s.run.path),
        "precision": s.precision,
        "budget": cfg.budget or None,
        "stopped_by_budget": bool(stopped_by_budget),
        "validation": s.last_val,
    }
    if cfg.export and s.rank == 0 and (step == cfg.steps or stopped_by_budget):
        summary["weights"] = str(
            export_task(
                task, cfg, step, wall, s.last_val, train_split, val_split, s.dev, s.world,
                s.precision,
            )
        )  # fmt: skip
    return summary


# --- shipped weights ---------------------------------------------------------------------------------------


def _card(
    cfg: TrainConfig,
    net,
    step: int,
    wall: float,
    val: dict,
    n_train: int | None,
    n_val: int | None,
    hw: dict,
    precision: str = "",
) -> dict:
    from model.methods.registry import METHODS
    from model.networks import count_params

    return {
        "label": METHODS[cfg.method].label if cfg.method in METHODS else cfg.method,
        "architecture": net.architecture,
        "parameters": count_params(net),
        "preset": cfg.preset,
        "data": {
            "dir": cfg.data,
            "split": "train",
            "train_faces": n_train,
            "val_faces": n_val,
            # A closed-form fit (no training step) draws no masks.
            "fresh_masks": bool(cfg.fresh_masks and step > 0),
            "image_size": cfg.size,
        },
        "iterations": step,
        "batch": cfg.batch,
        "images_seen": step * cfg.batch,
        "wall_time_s": round(wall, 1),
        "hardware": hw,
        # The compute budget the run was given and what it used (equal-budget comparisons).
        "budget": {
            "given": cfg.budget or f"{cfg.steps} steps",
            "images_seen": step * cfg.batch,
            "wall_time_s": round(wall, 1),
            "precision": precision or cfg.precision,
        },
        "validation": {k: round(v, 4) for k, v in val.items()},
        **({"notes": cfg.note} if cfg.note else {}),
        "config": asdict(cfg),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def export_dir(cfg: TrainConfig) -> Path:
    """Where a run exports its weights: never model/weights (that is `unmask promote`'s job)."""
    return Path(cfg.export_dir) if cfg.export_dir else RunFolder(cfg.run_dir).weights_dir


def export_task(
    task,
    cfg: TrainConfig,
    step: int,
    wall: float,
    val: dict,
    train_split,
    val_split,
    dev,
    world,
    precision: str = "",
) -> Path:
    from model.checkpoint import save_weights

    net = task.nets[task.export_net]
    n_val = len(val_split.face) if val_split is not None else None
    hw = hardware(dev, world)
    card = _card(cfg, net, step, wall, val, len(train_split.face), n_val, hw, precision)
    return save_weights(cfg.method, net.state_dict(), card, export_dir(cfg))


def export_checkpoint(path: Path, export_to: str | None = None, note: str | None = None) -> Path:
    """Export the network of a training checkpoint (e.g. the best step of a long run) into its run
    folder's weights/ (or `export_to`); `unmask promote` ships it."""
    from model.checkpoint import save_weights
    from model.tasks import TASKS

    ckpt = load_checkpoint(path)
    run_dir = str(Path(path).parent.parent)  # <run>/checkpoints/step_*.pt
    cfg = TrainConfig(
        **{
            **ckpt["config"],
            "run_dir": run_dir,
            "export_dir": export_to or "",
            **({"note": note} if note else {}),
        }
    )
    net = checkpoint_network(ckpt, TASKS[cfg.method].export_net, averaged=True)
    faces = ckpt.get("faces", {})
    hw = ckpt.get("hardware", {"processes": ckpt["world"]})
    val = ckpt.get("val", {})
    card = _card(
        cfg,
        net,
        ckpt["step"],
        ckpt["wall_s"],
        val,
        faces.get("train"),
        faces.get("val"),
        hw,
        ckpt.get("precision", ""),
    )
    card["checkpoint"] = str(path)
    return save_weights(cfg.method, net.state_dict(), card, export_dir(cfg))
