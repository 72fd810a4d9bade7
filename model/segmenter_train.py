"""Fine-tune the mask segmenter on examples that teach "mask" (model.segmenter_data), on a time budget.

`python -m model.segmenter_train --data data/utk --run-dir runs/segmenter-mask --minutes 30`
starts from the shipped weights (or from scratch with --scratch), draws new examples in a
background process, trains with bf16 autocast + channels_last on CPU, checkpoints and validates
every few minutes, and exports the final weights + card into `<run>/weights/`. Promotion into
model/weights is a separate, explicit step, the same as for every network: `unmask promote --run
RUN --data DIR` compares both on the same val faces (`validation_set`, `evaluate_net`, `score`)
and refuses a worse run.

Why not `unmask train --method segmenter`: that trainer's data is the paired set's masked faces
(fresh masks from model.masks only), it cannot start from shipped weights and runs fp32 on CPU.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from model.config import WEIGHTS_DIR

CHUNK = 128  # examples drawn per background job


def _chunk(args):
    from model.segmenter_data import make_examples

    faces, landmarks, seeds, templates = args
    return make_examples(faces, landmarks, seeds, templates)


def validation_set(data: Path, n: int = 96, templates: str = "") -> dict[str, np.ndarray]:
    """Fixed faces of the val split: the built masked faces with their segs (IoU), the same faces
    bare (false positives), and drawn examples of every kind (seeds 10**6 + i)."""
    from model.data import load_split
    from model.masks import cached_templates
    from model.segmenter_data import make_example

    s = load_split(data, "val", n)
    tpl = cached_templates(templates) if templates else None
    ex = [
        make_example(f, lm, 10**6 + i, tpl)
        for i, (f, lm) in enumerate(zip(s.face, s.landmarks, strict=True))
    ]
    return {
        "masked": s.masked,
        "seg": s.seg,
        "bare": s.face,
        "ex_image": np.stack([e.image for e in ex]),
        "ex_target": np.stack([e.target for e in ex]),
    }


@torch.no_grad()
def _probs(net, images: np.ndarray, batch: int = 16) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.append(
                torch.sigmoid(net(x.contiguous(memory_format=torch.channels_last)).float())[
                    :, 0
                ].numpy()
            )
    return np.concatenate(out)


def evaluate_net(net, val: dict[str, np.ndarray]) -> dict[str, float]:
    """IoU on the built masks (inside the photo), share of bare faces under 1 % area, IoU on the
    drawn examples."""
    from model.segmenter_eval import iou, iou_in_photo

    was = net.training
    net.eval()
    pm = _probs(net, val["masked"]) > 0.5
    pb = _probs(net, val["bare"]) > 0.5
    pe = _probs(net, val["ex_image"]) > 0.5
    net.train(was)
    area = pb.mean((1, 2))
    return {
        "iou": float(
            np.mean(
                [iou_in_photo(p, t, f) for p, t, f in zip(pm, val["seg"], val["bare"], strict=True)]
            )
        ),
        "bare_under_1pct": float(np.mean(area < 0.01)),
        "bare_area_mean": float(area.mean()),
        "examples_iou": float(
            np.mean([iou(p, t) for p, t in zip(pe, val["ex_target"], strict=True)])
        ),
    }


def score(v: dict[str, float]) -> float:
    """One number to compare runs: bare faces left alone and IoU both count."""
    return v["bare_under_1pct"] + v["iou"] + 0.5 * v["examples_iou"]


def train(args) -> Path:
    from model.checkpoint import load_weights, save_weights
    from model.data import load_split
    from model.losses import segmentation_loss
    from model.networks import build_network, count_params, from_architecture

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run = Path(args.run_dir)
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    if args.scratch:
        net = build_network("unet_segmenter", width=16)
        init = "scratch"
    else:
        state, card = load_weights("segmenter", args.init_weights)
        net = from_architecture(card["architecture"])
        net.load_state_dict(state)
        net.float()
        init = f"{args.init_weights}/segmenter.safetensors sha256 {card['sha256']}"
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)

    split = load_split(args.data, "train")
    val = validation_set(Path(args.data), args.val_n, args.templates)
    log = open(run / "log.jsonl", "a")
    v0 = evaluate_net(net, val)
    log.write(json.dumps({"kind": "val", "step": 0, "wall_s": 0, **v0}) + "\n")
    log.flush()
    print("start", v0, flush=True)

    pool = cf.ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"))
    rng = np.random.default_rng(args.seed)
    n = len(split.face)

    def submit(c: int) -> cf.Future:
        idx = np.random.default_rng(args.seed * 7919 + c).choice(n, CHUNK, replace=False)
        seeds = [args.seed * 10**7 + c * CHUNK + i for i in range(CHUNK)]
        return pool.submit(_chunk, (split.face[idx], split.landmarks[idx], seeds, args.templates))

    pending = [submit(c) for c in range(3)]
    next_chunk = 3
    budget = args.minutes * 60
    t0 = time.perf_counter()
    step, seen, last_val = 0, 0, t0
    best = (score(v0), 0)
    try:
        while time.perf_counter() - t0 < budget:
            images, targets = pending.pop(0).result()
            pending.append(submit(next_chunk))
            next_chunk += 1
            order = rng.permutation(len(images))
            for i in range(0, len(order) - args.batch + 1, args.batch):
                frac = min((time.perf_counter() - t0) / budget, 1.0)
                lr = args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + np.cos(np.pi * frac))
                for g in opt.param_groups:
                    g["lr"] = lr
                j = order[i : i + args.batch]
                x = torch.from_numpy(images[j]).permute(0, 3, 1, 2).float() / 127.5 - 1
                y = torch.from_numpy(targets[j])[:, None].float()
                flip = torch.rand(len(j)) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                y = torch.where(flip[:, None, None, None], y.flip(-1), y)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = net(x.contiguous(memory_format=torch.channels_last)).float()
                loss = segmentation_loss(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                seen += len(j)
                wall = time.perf_counter() - t0
                if step % 25 == 0:
                    log.write(
                        json.dumps(
                            {
                                "kind": "train",
                                "step": step,
                                "images_seen": seen,
                                "wall_s": round(wall, 1),
                                "loss": round(float(loss.detach()), 5),
                                "lr": lr,
                            }
                        )
                        + "\n"
                    )
                    log.flush()
                if time.perf_counter() - last_val > args.val_every_min * 60 or wall > budget:
                    v = evaluate_net(net, val)
                    last_val = time.perf_counter()
                    log.write(
                        json.dumps(
                            {
                                "kind": "val",
                                "step": step,
                                "images_seen": seen,
                                "wall_s": round(wall, 1),
                                **v,
                            }
                        )
                        + "\n"
                    )
                    log.flush()
                    print(step, seen, round(wall), v, flush=True)
                    torch.save(
                        {
                            "step": step,
                            "images_seen": seen,
                            "wall_s": wall,
                            "net": net.state_dict(),
                            "val": v,
                        },
                        run / "checkpoints" / f"step_{step:06d}.pt",
                    )
                    if score(v) > best[0]:
                        best = (score(v), step)
                if wall > budget:
                    break
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    wall = time.perf_counter() - t0
    v = evaluate_net(net, val)
    log.write(
        json.dumps(
            {"kind": "val", "step": step, "images_seen": seen, "wall_s": round(wall, 1), **v}
        )
        + "\n"
    )
    log.close()
    card = {
        "label": "segmenter",
        "architecture": net.architecture
        if hasattr(net, "architecture")
        else {"network": "unet_segmenter", "width": 16, "levels": 3},
        "parameters": count_params(net),
        "data": {
            "dir": str(Path(args.data).resolve()),
            "split": "train",
            "train_faces": n,
            "examples": "model.segmenter_data.make_example: bare / mask / partial + occluders, backgrounds, photo edges, camera",
            "kind_share": dict(zip(("bare", "mask", "partial"), (0.35, 0.45, 0.2), strict=True)),
            "image_size": 256,
        },
        "init": init,
        "iterations": step,
        "batch": args.batch,
        "images_seen": seen,
        "wall_time_s": round(wall, 1),
        "hardware": {
            "device": "cpu",
            "cpu_count": os.cpu_count(),
            "cpu_threads": args.threads,
            "example_workers": args.workers,
            "precision": "bf16 autocast, channels_last",
        },
        "validation": {k: round(x, 4) for k, x in v.items()},
        "validation_faces": f"first {args.val_n} of the val split of {args.data}",
        "config": {
            k: getattr(args, k) for k in ("lr", "lr_min", "batch", "minutes", "seed", "templates")
        },
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    from model.run_folder import RunFolder

    state = {k: t.contiguous() for k, t in net.state_dict().items()}
    path = save_weights("segmenter", state, card, RunFolder(run).weights_dir)
    print("wrote", path, v, flush=True)
    print(f"ship it with `unmask promote --run {run} --data {args.data}`", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    from model.cli import finish_help

    p = argparse.ArgumentParser(
        prog="python -m model.segmenter_train",
        description=__doc__.splitlines()[0],
        epilog="Exports into <run-dir>/weights; ship with `unmask promote --run RUN --data DATA`.",
    )
    p.add_argument(
        "--data", type=Path, default=Path("data/utk"), help="dataset folder (`unmask data build`)"
    )
    p.add_argument(
        "--run-dir", default="runs/segmenter-mask", help="run folder (checkpoints, log, weights/)"
    )
    p.add_argument(
        "--templates", default="../shared/data/masktheface", help="MaskTheFace templates folder"
    )
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of the fine-tune")
    p.add_argument("--batch", type=int, default=12, help="examples per step")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (AdamW)")
    p.add_argument(
        "--lr-min", type=float, default=2e-5, help="learning rate at the end of the cosine decay"
    )
    p.add_argument(
        "--seed", type=int, default=1, help="seed of the initialisation and the example stream"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=1, help="processes drawing examples")
    p.add_argument("--val-n", type=int, default=96, help="validation faces scored at each check")
    p.add_argument(
        "--val-every-min", type=float, default=5.0, help="minutes between validation checks"
    )
    p.add_argument(
        "--scratch", action="store_true", help="random init instead of the shipped weights"
    )
    p.add_argument(
        "--init-weights", type=Path, default=WEIGHTS_DIR, help="weights folder to start from"
    )
    finish_help(p)
    args = p.parse_args(argv)
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
