"""Training throughput per method at 256x256: the trainer's real data path (in-memory uint8 split,
flips, colour jitter) against the same training step fed one pre-made batch (the upper bound).

    python benchmarks/train_throughput.py --preset paper --batch 10 --steps 50      # on a GPU
    python benchmarks/train_throughput.py --preset compact --batch 2 --steps 3 --threads 2  # CPU

Prints one line per method (images/s both ways, ratio, and for GPUs the minutes Ye's schedule of
50k iterations would take at that batch) and writes --json. Run by hand; never in the tests.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from model.train_config import AUXILIARY, resolve


def synthetic_split(n: int, size: int = 256, seed: int = 0) -> SimpleNamespace:
    """Random faces with a lower-face hole: content does not change the cost of a training step."""
    rng = np.random.default_rng(seed)
    face = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    seg = np.zeros((n, size, size), bool)
    seg[:, size // 2 : size - 10, size // 5 : size - size // 5] = True
    masked = face.copy()
    masked[seg] = 128
    lm = rng.uniform(20, size - 20, (n, 68, 2)).astype(np.float32)
    return SimpleNamespace(
        ids=[str(i) for i in range(n)], face=face, masked=masked, seg=seg, landmarks=lm
    )


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(key: str, args, split, dev: torch.device, weights_dir: str) -> dict:
    import contextlib

    from model.batches import PairSource
    from model.networks import count_params
    from model.tasks import TASKS

    cfg = resolve(
        key,
        args.preset,
        batch=args.batch,
        weights_dir=weights_dir,
        warmup_steps=0,
        fresh_masks=False,
    )
    cuda = dev.type == "cuda"

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    torch.manual_seed(0)
    task = TASKS[key](cfg, dev, amp)
    if cuda:
        for net in task.nets.values():
            net.to(memory_format=torch.channels_last)
    source = PairSource(
        split, size=cfg.size, batch=cfg.batch, seed=0, device=dev, flip=True, jitter=cfg.jitter
    )
    fixed = source.batch_at(0)  # the bound: no indexing, conversion or augmentation per step

    def run(real: bool) -> float:
        for s in range(args.warmup):
            task.train_step(source.batch_at(s) if real else fixed, s)
        _sync(dev)
        t = time.perf_counter()
        for s in range(args.steps):
            task.train_step(source.batch_at(args.warmup + s) if real else fixed, 10**6 + s)
        _sync(dev)
        return time.perf_counter() - t

    bound = run(real=False)
    real = run(real=True)
    n = args.steps * cfg.batch
    return {
        "method": key,
        "preset": args.preset,
        "batch": cfg.batch,
        "params": count_params(task.nets[task.export_net]),
        "random_img_s": n / bound,
        "real_img_s": n / real,
        "real_over_bound": bound / real,
        "ye_50k_iters_min": 50_000 * real / args.steps / 60,
    }


def main() -> None:
    from model.methods.gan import RECIPES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="*", default=[*RECIPES, *AUXILIARY])
    p.add_argument("--preset", default="compact")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--faces", type=int, default=512, help="size of the synthetic in-memory split")
    p.add_argument("--data", help="a built dataset: use its train split instead of synthetic faces")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if args.data:
        from model.data import load_split

        split = load_split(args.data, "train", args.faces)
    else:
        split = synthetic_split(max(args.faces, args.batch))
    rows = []
    with tempfile.TemporaryDirectory() as wd:
        if "landmark" in args.methods:  # C1 needs a (here untrained) frozen regressor
            from model.checkpoint import save_weights
            from model.networks import build_network

            reg = build_network(
                "landmark_regressor",
                **resolve("landmark_regressor", args.preset).networks.get("landmark_regressor", {}),
            )
            save_weights(
                "landmark_regressor", reg.state_dict(), {"architecture": reg.architecture}, wd
            )
        name = (
            torch.cuda.get_device_name(dev)
            if dev.type == "cuda"
            else f"cpu x{torch.get_num_threads()} threads"
        )
        print(
            f"device: {name}; preset {args.preset}, batch {args.batch}, {args.steps} timed steps after {args.warmup}"
        )
        for key in args.methods:
            r = measure(key, args, split, dev, wd)
            rows.append({**r, "device": name})
            print(
                f"{key:20s} params {r['params'] / 1e6:6.2f}M  random {r['random_img_s']:8.1f} img/s  "
                f"real {r['real_img_s']:8.1f} img/s  real/bound {r['real_over_bound']:.2f}  "
                f"50k iters: {r['ye_50k_iters_min']:.1f} min",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
