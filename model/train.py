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

from model.train_config import (
    AUXILIARY,
    TrainConfig,
    parse_budget,
    preset_names,
    resolve,
    to_toml,
)

CKPT_PATTERN = "step_{:07d}.pt"


def trainable_keys() -> list[str]:
    from model.methods.registry import METHODS

    return [k for k, s in METHODS.items() if s.trainable] + list(AUXILIARY)


# --- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=trainable_keys(), help="what to train")
    parser.add_argument("--data", help="dataset folder made by `unmask data build`")
    parser.add_argument(
        "--preset",
        default="compact",
        help=f"width/schedule preset: {', '.join(preset_names())} or a .toml file",
    )
    parser.add_argument("--steps", type=int, help="total training steps (global batches)")
    parser.add_argument("--batch", type=int, help="effective batch size (over all processes)")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--size", type=int, help="training image side (default 256)")
    parser.add_argument("--train-limit", type=int, help="use only the first N training faces")
    parser.add_argument("--val-limit", type=int)
    parser.add_argument("--val-every", type=int)
    parser.add_argument("--ckpt-every", type=int)
    parser.add_argument("--log-every", type=int)
    parser.add_argument(
        "--warmup-steps", type=int, help="generator-only steps first (recipes with warm-up)"
    )
    parser.add_argument(
        "--fresh-masks",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="new synthetic masks every epoch",
    )
    parser.add_argument(
        "--mask-workers", type=int, help="processes drawing fresh masks (0 = a background thread)"
    )
    parser.add_argument("--mask-templates", help="MaskTheFace templates folder for fresh masks")
    parser.add_argument(
        "--regressor",
        help="landmark method: landmark_regressor weights (.safetensors) or run checkpoint (.pt)",
    )
    parser.add_argument(
        "--weights-dir",
        help="shipped weights folder, where the landmark method's regressor is read (default model/weights)",
    )
    parser.add_argument("--run-dir", help="run folder (default runs/<method>-<preset>)")
    parser.add_argument(
        "--budget",
        help="stop cleanly (validate, checkpoint, export) at a wall-clock and/or images-seen budget: "
        "30m, 1h30m, 90s, 200000img, 45m+200000img (default: none, run --steps)",
    )
    parser.add_argument("--note", help="a sentence for the model card (what, why, at what cost)")
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        help="auto (default): bf16 autocast + channels_last on CUDA and on CPUs with native bf16",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's latest checkpoint"
    )
    parser.add_argument(
        "--export",
        action="store_true",
        help="only export the run's latest checkpoint into <run>/weights (then `unmask promote`)",
    )
    parser.add_argument(
        "--no-export", action="store_true", help="do not export weights at the end of training"
    )
    parser.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    run_dir = args.run_dir or str(Path("runs") / f"{args.method}-{Path(args.preset).stem}")
    if args.export:
        path = export_checkpoint(latest_checkpoint(Path(run_dir)), note=args.note)
        print(f"exported {path}; ship it with `unmask promote --run {run_dir} --data DIR`")
        return 0
    if not args.data:
        raise SystemExit(
            "unmask train: --data DIR is required (a dataset from `unmask data build`)"
        )
    cfg = resolve(
        args.method,
        args.preset,
        data=str(Path(args.data).resolve()),
        run_dir=run_dir,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        size=args.size,
        train_limit=args.train_limit,
        val_limit=args.val_limit,
        val_every=args.val_every,
        ckpt_every=args.ckpt_every,
        log_every=args.log_every,
        warmup_steps=args.warmup_steps,
        fresh_masks=args.fresh_masks,
        mask_workers=args.mask_workers,
        mask_templates=args.mask_templates,
        regressor=args.regressor,
        weights_dir=args.weights_dir,
        export=False if args.no_export else None,
        budget=args.budget,
        precision=args.precision,
        note=args.note,
    )
    from model.data import load_split

    rank, _ = _dist_init()
    train_split = load_split(cfg.data, "train", cfg.train_limit or None)
    val_split = load_split(cfg.data, "val", cfg.val_limit or None)
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


def latest_checkpoint(run_dir: Path) -> Path:
    found = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    if not found:
        raise FileNotFoundError(f"no checkpoints/step_*.pt in {run_dir}")
    return found[-1]


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash leaves the previous checkpoint, never half a file


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
    from torch.nn.parallel import DistributedDataParallel as DDP
    from tqdm import tqdm

    from model.batches import PairSource
    from model.tasks import TASKS

    rank, world = _dist_init()
    dev = _pick_device(str(device) if device is not None else None, rank)
    cuda = dev.type == "cuda"
    if cfg.batch % world:
        raise ValueError(f"batch {cfg.batch} must split evenly over {world} processes")
    per_rank = cfg.batch // world
    run_dir = Path(cfg.run_dir or f"runs/{cfg.method}-{cfg.preset}")
    ckpt_dir = run_dir / "checkpoints"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    precision = resolve_precision(cfg.precision, dev)
    budget_s, budget_images = parse_budget(cfg.budget)

    def amp():
        if precision == "bf16":
            return torch.autocast(dev.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # 1. Networks: identical initialisation on every process (seeded), then per-process RNG (dropout).
    torch.manual_seed(cfg.seed)
    task = TASKS[cfg.method](cfg, dev, amp)
    if precision == "bf16":  # channels_last is what makes bf16 convolutions fast (CPU and CUDA)
        for net in task.nets.values():
            net.to(memory_format=torch.channels_last)
    if world > 1:
        task.train_nets = {
            name: DDP(net, device_ids=[dev.index] if cuda else None)
            for name, net in task.nets.items()
        }
    torch.manual_seed(cfg.seed * 1000 + rank + 1)

    # 2. State: fresh, or the latest checkpoint.
    start, wall_before, last_val = 0, 0.0, {}
    existing = sorted(ckpt_dir.glob("step_*.pt"))
    if resume and existing:
        ckpt = torch.load(existing[-1], map_location=dev, weights_only=True)
        for name, net in task.nets.items():
            net.load_state_dict(ckpt["nets"][name])
        for name, opt in task.optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        start, wall_before, last_val = ckpt["step"], ckpt["wall_s"], ckpt.get("val", {})
        rngs = ckpt["rng"]
        if len(rngs) == world:
            _set_rng_state({k: v.cpu() for k, v in rngs[rank].items()}, dev)
    elif existing and not resume:
        raise SystemExit(
            f"{run_dir} already has checkpoints: pass --resume, or choose another --run-dir"
        )
    else:  # a fresh run: closed-form parts (a gappy-PCA prior) are fitted on the training faces
        t_prep = time.perf_counter()
        task.prepare(torch.from_numpy(train_split.face).permute(0, 3, 1, 2).to(dev))
        wall_before = time.perf_counter() - t_prep  # it counts against the budget and the card
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(exist_ok=True)
        (run_dir / "config.toml").write_text(to_toml(cfg))

    # 3. Data: the split in memory as uint8; validation faces fixed.
    source = PairSource(
        train_split,
        size=cfg.size,
        batch=cfg.batch,
        seed=cfg.seed,
        device=dev,
        rank=rank,
        world=world,
        flip=cfg.flip,
        jitter=cfg.jitter,
        fresh_masks=cfg.fresh_masks,
        mask_workers=cfg.mask_workers,
        mask_templates=cfg.mask_templates,
    )
    has_val = val_split is not None and len(val_split.face) > 0
    val_batches = _fixed_batches(
        val_split if has_val else train_split, cfg, dev, cfg.val_limit, per_rank
    )

    hw = hardware(dev, world)

    def checkpoint(step: int, wall: float) -> None:
        rng = _rng_state(dev)
        rngs = [None] * world
        if world > 1:
            dist.all_gather_object(rngs, {k: v.cpu() for k, v in rng.items()})
        else:
            rngs = [rng]
        if rank != 0:
            return
        _atomic_save(
            {
                "key": cfg.method,
                "step": step,
                "images_seen": step * cfg.batch,
                "wall_s": wall,
                "world": world,
                "config": asdict(cfg),
                "architectures": {n: net.architecture for n, net in task.nets.items()},
                "nets": {n: net.state_dict() for n, net in task.nets.items()},
                "optimizers": {n: o.state_dict() for n, o in task.optimizers.items()},
                "rng": rngs,
                "val": last_val,
                "hardware": hw,
                "precision": precision,
                "faces": {
                    "train": len(train_split.face),
                    "val": len(val_split.face) if has_val else 0,
                },
            },
            ckpt_dir / CKPT_PATTERN.format(step),
        )
        if cfg.keep_checkpoints:
            for old in sorted(ckpt_dir.glob("step_*.pt"))[: -cfg.keep_checkpoints]:
                old.unlink()

    # 4. The loop.
    log = open(run_dir / "log.jsonl", "a") if rank == 0 else None
    t0 = time.perf_counter()
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        disable=not progress or rank != 0,
        desc=f"train {cfg.method}",
        unit="step",
    )
    step, validated_at = start, -1

    def out_of_budget(step: int, wall: float) -> bool:
        over = (budget_s and wall >= budget_s) or (
            budget_images and step * cfg.batch >= budget_images
        )
        if world > 1:  # every process stops at the same step
            flag = torch.tensor([1.0 if over else 0.0], device=dev)
            dist.all_reduce(flag)
            over = bool(flag.item())
        return bool(over)

    def run_validation(step: int, wall: float) -> None:
        nonlocal last_val, validated_at
        validated_at = step
        if rank == 0:
            last_val = validate(task, val_batches, run_dir / "samples" / f"step_{step:07d}.png")
            log.write(
                json.dumps(
                    {
                        "kind": "val",
                        "step": step,
                        "images_seen": step * cfg.batch,
                        "wall_s": round(wall, 3),
                        "val_source": "val" if has_val else "train",
                        **last_val,
                    }
                )
                + "\n"
            )
            log.flush()
        if world > 1:
            dist.barrier()

    stopped_by_budget = False
    try:
        for step in range(start + 1, cfg.steps + 1):
            logs = task.train_step(source.batch_at(step - 1), step - 1)
            bar.update(1)
            wall = wall_before + time.perf_counter() - t0
            stopped_by_budget = (budget_s or budget_images) and out_of_budget(step, wall)
            last = step == cfg.steps or stopped_by_budget
            if log is not None and (step % cfg.log_every == 0 or last):
                vals = {
                    k: round(float(v), 6) for k, v in logs.items()
                }  # the only host sync per log
                log.write(
                    json.dumps(
                        {
                            "kind": "train",
                            "step": step,
                            "images_seen": step * cfg.batch,
                            "wall_s": round(wall, 3),
                            **vals,
                        }
                    )
                    + "\n"
                )
                log.flush()
                bar.set_postfix({k: f"{v:.3g}" for k, v in vals.items() if not k.startswith("g_")})
            if (cfg.val_every and step % cfg.val_every == 0) or last:
                run_validation(step, wall)
            if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or last:
                checkpoint(step, wall)
            if stopped_by_budget:
                break
        if validated_at != step:  # no step ran (a closed-form task, or already done): still report
            wall = wall_before + time.perf_counter() - t0
            run_validation(step, wall)
            checkpoint(step, wall)
    finally:
        bar.close()
        source.close()
        if log is not None:
            log.close()
    wall = wall_before + time.perf_counter() - t0
    summary = {
        "method": cfg.method,
        "steps": step,
        "images_seen": step * cfg.batch,
        "wall_s": round(wall, 2),
        "run_dir": str(run_dir),
        "precision": precision,
        "budget": cfg.budget or None,
        "stopped_by_budget": bool(stopped_by_budget),
        "validation": last_val,
    }
    if cfg.export and rank == 0 and (step == cfg.steps or stopped_by_budget):
        summary["weights"] = str(
            export_task(
                task, cfg, step, wall, last_val, train_split, val_split, dev, world, precision
            )
        )
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
            "fresh_masks": cfg.fresh_masks,
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
    return Path(cfg.export_dir) if cfg.export_dir else Path(cfg.run_dir) / "weights"


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
    from model.networks import from_architecture
    from model.tasks import TASKS

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    run_dir = str(Path(path).parent.parent)
    cfg = TrainConfig(
        **{
            **ckpt["config"],
            "run_dir": run_dir,
            "export_dir": export_to or "",
            **({"note": note} if note else {}),
        }
    )
    name = TASKS[cfg.method].export_net
    net = from_architecture(ckpt["architectures"][name])
    net.load_state_dict(ckpt["nets"][name])
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
