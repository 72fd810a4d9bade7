"""`unmask gpu`: the one prepared job that trains every learned network on one GPU in one call.

  unmask gpu pack --data data/utk          here: train + val faces and what the device lacks ->
                                           carry/gpu/ (model.gpu_pack), sized to fit the 64 MiB
  unmask gpu size                          what one device call would send, part by part
  unmask gpu train --pack carry/gpu --out $OUT --minutes 9      on the device (or the CPU rehearsal)
  unmask gpu unpack --from DIR [--promote --data data/utk]      here: bundles -> a run folder

`train` (1) decodes the pack and draws K procedural masks per face once, on every core, into .npy
files; (2) starts one process per network, all sharing the GPU; each measures its own step rate
(benchmarks/train_throughput.py's measure: the real data path and the random-tensor bound) while all
run together; (3) gives every GAN the same images budget, the largest that a shared-GPU schedule fits
before the deadline (capped at --images, the papers' 500,000), and each process runs `model.train`
with `--budget <seconds>s+<images>img`; (4) as each network finishes, adds its weights, card, log,
config and last sample grid to a tar in --out (at most 6 tars of < 16 MiB, rewritten atomically)
and rewrites table.md; job.jsonl logs every event. A cut-off job still returns what had finished.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from model.config import REPO_DIR, WEIGHTS_DIR

MiB = 2**20
BUNDLE_CAP = 16 * MiB - 256 * 1024  # each file back from the device is at most 16 MiB
MAX_BUNDLES = 6  # + job.jsonl + table.md = the 8 files that come back
MAX_ENTRIES = 12_000  # train entries (faces x masks) per process: ~5.5 GB of uint8 on the GPU
CALIBRATE_WARMUP = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="gpu_command", metavar="STEP", required=True)
    p = sub.add_parser("pack", help="write the GPU pack (faces, landmarks, wheels, LPIPS weights)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (`unmask data build`)")
    p.add_argument(
        "--out", type=Path, default=Path("carry/gpu"), help="default carry/gpu (git-ignored)"
    )
    p.add_argument("--val", type=int, default=64, help="val faces to carry (default 64)")
    p.add_argument(
        "--room-mib",
        type=float,
        help="bytes the pack may take (default: 64 MiB less the working tree, less 0.5 MiB)",
    )

    p = sub.add_parser("size", help="what one device call would send (tree + carried folders)")
    p.add_argument("--carry", type=Path, nargs="*", default=[Path("carry/gpu")])

    p = sub.add_parser("train", help="train every network on one device within --minutes")
    p.add_argument("--pack", type=Path, default=Path("carry/gpu"))
    p.add_argument(
        "--out", type=Path, required=True, help="where the bundles go ($OUT on the device)"
    )
    p.add_argument("--preset", default="compact")
    p.add_argument(
        "--minutes", type=float, default=9.0, help="the whole job's wall clock, all included"
    )
    p.add_argument("--images", type=int, default=500_000, help="most images per GAN (papers: 500k)")
    p.add_argument("--keys", nargs="*", help="networks to train (default: every trainable key)")
    p.add_argument("--copies", type=int, default=0, help="masks drawn per train face (0 = auto)")
    p.add_argument(
        "--calibrate-steps", type=int, default=20, help="timed steps per network (0 = none)"
    )
    p.add_argument("--device", default="", help="cuda | cpu (default: cuda when available)")
    p.add_argument(
        "--weights-dir", type=Path, default=WEIGHTS_DIR, help="the landmark GAN's frozen regressor"
    )
    p.add_argument("--work", type=Path, help="scratch folder (default: a new one under /tmp)")

    p = sub.add_parser("unpack", help="bundles back from the device -> a run folder (+ promotion)")
    p.add_argument(
        "--from", dest="src", type=Path, required=True, help="the folder the files came back in"
    )
    p.add_argument("--run-dir", type=Path, help="default runs/gpu/<UTC time>")
    p.add_argument("--promote", action="store_true", help="then `unmask promote` every network")
    p.add_argument("--data", type=Path, help="dataset folder whose val faces decide promotion")
    p.add_argument("--faces", type=int, default=200)
    p.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)

    p = sub.add_parser("worker", help=argparse.SUPPRESS)  # one network; started by `train`
    p.add_argument("--key", required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--pack", type=Path, required=True)
    p.add_argument("--preset", required=True)
    p.add_argument(
        "--deadline", type=float, required=True, help="epoch seconds: training stops by then"
    )
    p.add_argument("--device", default="")
    p.add_argument("--calibrate-steps", type=int, default=20)
    p.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--threads", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    if args.gpu_command == "pack":
        from model.gpu_pack import format_sizes, pack, travel_sizes

        room = int(args.room_mib * MiB) if args.room_mib else None
        pack(args.data, args.out, room=room, val=args.val)
        try:
            sizes = travel_sizes([args.out])
        except (OSError, subprocess.CalledProcessError) as err:  # not a git checkout
            print(f"the working tree was not measured ({err}); `unmask gpu size` in the checkout")
            return 0
        print(format_sizes(sizes))
        print(
            "\nthe device call (one, prepared):\n"
            f"  run(command='PYTHONUNBUFFERED=1 python3 -m model gpu train --pack {args.out} "
            f"--out $OUT --minutes 9', carry=['{args.out}'], timeout_s=600)\n"
            f"then here: unmask gpu unpack --from <files_at> --promote --data {args.data}"
        )
        return 0 if sizes["total"] <= sizes["limit"] else 1
    if args.gpu_command == "size":
        from model.gpu_pack import format_sizes, travel_sizes

        sizes = travel_sizes(args.carry)
        print(format_sizes(sizes))
        return 0 if sizes["total"] <= sizes["limit"] else 1
    if args.gpu_command == "train":
        return train_all(args)
    if args.gpu_command == "unpack":
        return unpack(args)
    return worker(args)


# --- 1. the data, decoded once --------------------------------------------------------------------


def mask_seed(seed: int, copy: int) -> int:
    """Copy 0 keeps the dataset's seed; the others are derived from it."""
    return int(seed) if copy == 0 else (int(seed) * 1_000_003 + copy * 100_003) % 2**31


_M: dict = {}  # the materialising pool's per-process state


def _m_init(pack_dir: str, split_dir: str, copies: int) -> None:
    from model.gpu_pack import read_pack

    _M["pack"] = read_pack(Path(pack_dir))
    _M["copies"] = copies
    _M["arrays"] = {
        name: np.load(Path(split_dir) / f"{name}.npy", mmap_mode="r+")
        for name in ("train_face", "train_masked", "train_seg", "val_face", "val_masked", "val_seg")
    }


def _m_chunk(jobs: list[tuple[str, int, int]]) -> None:
    """(part, row in that part, index in the pack): decode the face, draw its masks, write rows."""
    from model.gpu_pack import decode_face
    from model.masks import apply_mask

    pk, a = _M["pack"], _M["arrays"]
    for part, row, i in jobs:
        face = decode_face(pk.blobs[i])
        a[f"{part}_face"][row] = face
        copies = _M["copies"] if part == "train" else 1
        for k in range(copies):
            m = apply_mask(face, pk.landmarks[i], seed=mask_seed(pk.seed[i], k))
            a[f"{part}_masked"][row * copies + k] = m.image
            a[f"{part}_seg"][row * copies + k] = m.seg


def materialize(pack_dir: Path, split_dir: Path, copies: int, workers: int) -> dict:
    """Decode the pack into .npy files the training processes map: faces, landmarks, `copies`
    masked versions of every train face (procedural styles; MaskTheFace templates do not travel)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    from model.config import IMAGE_SIZE
    from model.gpu_pack import pixels_digest, read_pack

    pk = read_pack(pack_dir)
    parts = {"train": np.flatnonzero(pk.split == 0), "val": np.flatnonzero(pk.split == 1)}
    if copies <= 0:
        copies = max(1, min(16, MAX_ENTRIES // max(len(parts["train"]), 1)))
    split_dir.mkdir(parents=True, exist_ok=True)
    s = IMAGE_SIZE
    for part, idx in parts.items():
        n, k = len(idx), copies if part == "train" else 1
        for name, shape, dtype in (
            ("face", (n, s, s, 3), np.uint8),
            ("masked", (n * k, s, s, 3), np.uint8),
            ("seg", (n * k, s, s), bool),
        ):
            np.lib.format.open_memmap(split_dir / f"{part}_{name}.npy", "w+", dtype, shape).flush()
        np.save(split_dir / f"{part}_landmarks.npy", pk.landmarks[idx])
    jobs = [(part, row, int(i)) for part, idx in parts.items() for row, i in enumerate(idx)]
    chunks = [jobs[j : j + 8] for j in range(0, len(jobs), 8)]
    # fork: the parent has not imported torch yet, and `python -m model` must not run again
    ctx = mp.get_context("fork")
    with cf.ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_m_init,
        initargs=(str(pack_dir), str(split_dir), copies),
    ) as pool:
        list(pool.map(_m_chunk, chunks))
    faces = [np.load(split_dir / f"{p}_face.npy", mmap_mode="r") for p in parts]
    order = np.argsort(np.concatenate([parts["train"], parts["val"]]))
    stacked = [f[r] for f in faces for r in range(len(f))]
    digest = pixels_digest(stacked[j] for j in order)
    info = {
        "ids": {p: [pk.ids[i] for i in idx] for p, idx in parts.items()},
        "copies": copies,
        "pack": pk.meta,
        "pixels_match_pack": digest == pk.meta.get("pixels_sha256"),
    }
    (split_dir / "info.json").write_text(json.dumps(info))
    return info


def load_split(split_dir: Path, part: str, replicate: bool = True):
    """A model.data.PairedSplit of the materialised arrays. Train: every (face, mask copy) is an
    entry (K per face); `replicate=False` gives one entry per face, with its first mask."""
    from model.data import PairedSplit

    info = json.loads((split_dir / "info.json").read_text())
    ids = info["ids"][part]
    k = info["copies"] if part == "train" else 1
    face = np.load(split_dir / f"{part}_face.npy", mmap_mode="r")
    masked = np.load(split_dir / f"{part}_masked.npy", mmap_mode="r")
    seg = np.load(split_dir / f"{part}_seg.npy", mmap_mode="r")
    lms = np.load(split_dir / f"{part}_landmarks.npy")
    if k > 1 and replicate:
        idx = np.repeat(np.arange(len(ids)), k)
        return PairedSplit(
            ids=[f"{ids[i]}#{j % k}" for j, i in enumerate(idx)],
            face=face[idx],
            masked=masked,
            seg=seg,
            landmarks=lms[idx],
        )
    return PairedSplit(ids=ids, face=face, masked=masked[::k], seg=seg[::k], landmarks=lms)


# --- 2. one network per process -------------------------------------------------------------------


def _env_report(device) -> dict:
    import platform

    import torch

    from model.gpu_pack import spec_origin
    from model.lpips import weights_path

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "lpips_weights": str(weights_path()),
        "pytorch_msssim": spec_origin("pytorch_msssim"),
    }


def _subset(split, n: int):
    from model.data import PairedSplit

    n = min(n, len(split.ids))
    return PairedSplit(
        ids=split.ids[:n],
        face=np.asarray(split.face[:n]),
        masked=np.asarray(split.masked[:n]),
        seg=np.asarray(split.seg[:n]),
        landmarks=split.landmarks[:n],
    )


def _wait_for(path: Path, until: float) -> dict | None:
    while time.time() < until:
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.25)
    return None


def worker(args: argparse.Namespace) -> int:
    """Calibrate, wait for the shared budget, train one network, amend its card."""
    import torch

    from model.checkpoint import weights_paths
    from model.train import train
    from model.train_config import resolve

    torch.set_num_threads(max(1, args.threads))
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    work, key = args.work, args.key
    run_dir = work / "runs" / key
    run_dir.mkdir(parents=True, exist_ok=True)
    split_dir = work / "split"
    info = json.loads((split_dir / "info.json").read_text())
    t_load = time.perf_counter()
    train_split = load_split(split_dir, "train", replicate=key != "eigenface")
    val_split = load_split(split_dir, "val")
    load_s = time.perf_counter() - t_load
    base = resolve(key, args.preset)

    # 1. Rates with every process on the device at once (the shared GPU, as in training).
    calib: dict = {"key": key, "env": _env_report(dev), "load_s": round(load_s, 2)}
    if args.calibrate_steps > 0 and key != "eigenface":
        from types import SimpleNamespace

        from benchmarks.train_throughput import measure

        ns = SimpleNamespace(
            preset=args.preset,
            batch=base.batch,
            warmup=CALIBRATE_WARMUP,
            steps=args.calibrate_steps,
        )
        calib.update(measure(key, ns, _subset(train_split, 256), dev, str(args.weights_dir)))
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    _atomic_json(run_dir / "calib.json", calib)

    # 2. The shared budget (written by `train` once every rate is in; the deadline alone if not).
    budget = _wait_for(work / "budget.json", args.deadline - 30) or {}
    images = budget.get("images", {}).get(key, 0)
    seconds = max(5.0, args.deadline - time.time() - 5)  # 5 s: building the task, uploading
    spec = f"{int(seconds)}s" + (f"+{images}img" if images else "")
    cfg = resolve(
        key,
        args.preset,
        data=str((args.pack / "pack.npz").resolve()),
        run_dir=str(run_dir),
        budget=spec,
        fresh_masks=False,  # K masks per face were drawn once, on every core (see materialize)
        mask_workers=0,
        keep_checkpoints=2,
        weights_dir=str(args.weights_dir),
        steps=0 if key == "eigenface" else None,  # closed form: fitted by prepare, no steps
    )
    summary = train(cfg, train_split, val_split, device=dev, progress=False)

    # 3. The card says what the pack held (distinct faces, masks per face, codec), not entries.
    if "weights" in summary:
        card_path = weights_paths(key, Path(summary["weights"]).parent)[1]
        card = json.loads(card_path.read_text())
        pk = info["pack"]
        card["data"].update(
            dir=f"{pk['source']} via the GPU pack",
            train_faces=pk["train_faces"],
            train_faces_in_dataset=pk["train_faces_in_dataset"],
            val_faces=pk["val_faces"],
            masks=(
                f"{info['copies'] if key != 'eigenface' else 1} procedural masks per face "
                "(model.masks, no MaskTheFace templates), drawn once"
            ),
            pack_image=pk["image"],
            pack_pixels_exact=info["pixels_match_pack"],
            lpips_weights=pk["lpips"]["kind"],
        )
        card["gpu_job"] = {"budget": spec, "shared_budget": budget, "calibration": calib}
        _atomic_json(card_path, card)
    summary["calibration"] = calib
    _atomic_json(run_dir / "summary.json", summary)
    return 0


# --- 3. the equal budget ----------------------------------------------------------------------------


def shared_finish_time(rates: dict[str, float], targets: dict[str, int]) -> float:
    """Seconds until every process has seen its target images, when each was measured at
    rates[k] img/s with all len(rates) running together and the device is shared evenly among
    those still running (a finished process's share goes to the others)."""
    n = len(rates)
    speed = {k: max(r, 1e-9) * n for k, r in rates.items()}  # img/s with the device alone
    left = {k: float(targets.get(k, 0)) for k in rates}
    active = {k for k, v in left.items() if v > 0}
    t = 0.0
    while active:
        m = len(active)
        dt = min(left[k] / (speed[k] / m) for k in active)
        t += dt
        for k in list(active):
            left[k] -= speed[k] / m * dt
            if left[k] <= 1e-6 * max(targets.get(k, 1), 1):
                active.discard(k)
    return t


def equal_images(
    rates: dict[str, float],
    helpers: dict[str, int],
    gans: list[str],
    seconds: float,
    cap: int,
    step: int,
    safety: float = 0.85,
) -> int:
    """The largest images budget B (a multiple of `step`, at most `cap`) that every GAN reaches
    within safety * seconds, the helpers running beside them to their own targets."""
    known = [g for g in gans if g in rates]
    if not known:
        return cap

    def fits(b: int) -> bool:
        targets = {**{k: v for k, v in helpers.items() if k in rates}, **dict.fromkeys(known, b)}
        return shared_finish_time(rates, targets) <= seconds * safety

    if fits(cap):
        return cap
    lo, hi = 0, cap // step
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid * step) else (lo, mid - 1)
    return max(lo * step, step)


# --- 4. what comes back -------------------------------------------------------------------------------


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class Bundles:
    """Finished networks packed into at most MAX_BUNDLES tars under `out`, first fit, each below
    BUNDLE_CAP; a tar is rewritten whole (temporary file + rename) when a network joins it."""

    def __init__(self, out: Path):
        self.out = out
        self.bins: list[list[tuple[str, Path]]] = []

    @staticmethod
    def _size(members: list[tuple[str, Path]]) -> int:
        # a header (and room for a PAX header) per member, the data in 512-byte blocks, the end
        return sum(1536 + -(-p.stat().st_size // 512) * 512 for _, p in members) + 10240

    def add(self, members: list[tuple[str, Path]], optional: list[tuple[str, Path]]) -> str | None:
        """The tar the members went into, or None when no tar has room."""
        members = [(a, p) for a, p in members if p.is_file()]
        optional = [(a, p) for a, p in optional if p.is_file()]
        for i in [*range(len(self.bins)), len(self.bins)]:
            if i == MAX_BUNDLES:
                return None
            current = self.bins[i] if i < len(self.bins) else []
            if self._size(current + members) > BUNDLE_CAP:
                continue
            new = current + members
            for extra in optional:
                if self._size(new + [extra]) <= BUNDLE_CAP:
                    new.append(extra)
            if i == len(self.bins):
                self.bins.append(new)
            self.bins[i] = new
            return self._write(i)
        return None

    def _write(self, i: int) -> str:
        name = f"bundle-{i + 1}.tar"
        tmp = self.out / f".{name}.tmp"
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for arcname, path in self.bins[i]:
                tar.add(path, arcname=arcname, recursive=False)
        os.replace(tmp, self.out / name)
        return name


def _metrics_text(val: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in val.items())


def write_table(out: Path, rows: dict[str, dict], meta: dict) -> None:
    """table.md: one row per network so far (validation on the pack's val faces)."""
    lines = [
        f"# GPU job: {meta.get('device', '?')}, preset {meta.get('preset')}, "
        f"{meta.get('train_faces', '?')} train faces x {meta.get('copies', '?')} masks, "
        f"equal GAN budget {meta.get('gan_images', '?')} images",
        "",
        "| network | images seen | steps x batch | wall s | img/s (shared) | bound img/s (shared) "
        "| real/bound | stopped | validation |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for key, r in rows.items():
        s, c = r.get("summary", {}), r.get("calibration", {})
        seen, wall = s.get("images_seen", 0), s.get("wall_s", 0) or 0
        bound, ratio = c.get("random_img_s"), c.get("real_over_bound")
        lines.append(
            f"| `{key}` | {seen:,} | {s.get('steps', 0):,} x {r.get('batch', '?')} | {wall:.0f} "
            f"| {seen / wall if wall else 0:.0f} | {f'{bound:.0f}' if bound else '–'} "
            f"| {f'{ratio:.2f}' if ratio else '–'} | {r.get('status', '?')} "
            f"| {_metrics_text(s.get('validation', {}))} |"
        )
    tmp = out / ".table.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out / "table.md")


# --- the job ------------------------------------------------------------------------------------------


def train_all(args: argparse.Namespace) -> int:
    t_start = time.time()
    total = args.minutes * 60
    reserve = max(20.0, 0.06 * total)  # after the training deadline: exports, bundles, table
    train_deadline = t_start + total - reserve
    hard_stop = t_start + total - 8
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(f"/tmp/unmask-gpu-{os.getpid()}")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    pack_dir = args.pack.resolve()
    log_path = out / "job.jsonl"

    def event(kind: str, **fields) -> None:
        rec = {"t": round(time.time() - t_start, 1), "event": kind, **fields}
        with open(log_path, "a") as f:
            f.write(json.dumps(rec, default=str) + "\n")
        print(f"[{rec['t']:6.1f}s] {kind}: " + json.dumps(fields, default=str)[:400], flush=True)

    from model.gpu_pack import site_paths

    cores = os.cpu_count() or 1
    event("start", pack=str(pack_dir), preset=args.preset, minutes=args.minutes, cores=cores)

    # 1. Data: decoded and masked once, into files every process maps.
    info = materialize(pack_dir, work / "split", args.copies, workers=cores)
    event(
        "data",
        train_faces=len(info["ids"]["train"]),
        val_faces=len(info["ids"]["val"]),
        copies=info["copies"],
        pixels_match_pack=info["pixels_match_pack"],
        pack=info["pack"],
    )

    # 2. One process per network, all at once.
    from model.methods.gan import RECIPES
    from model.train import trainable_keys
    from model.train_config import resolve

    keys = args.keys or trainable_keys()
    unknown = set(keys) - set(trainable_keys())
    if unknown:
        raise SystemExit(f"unmask gpu train: unknown keys {sorted(unknown)}")
    gans = [k for k in keys if k in RECIPES]
    cfgs = {k: resolve(k, args.preset) for k in keys}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*map(str, site_paths(pack_dir)), str(REPO_DIR), *filter(None, [env.get("PYTHONPATH")])]
    )
    threads = max(1, cores // len(keys))
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads))
    procs: dict[str, subprocess.Popen] = {}
    for key in keys:
        (work / "runs" / key).mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "model", "gpu", "worker", "--key", key, "--work", str(work),
            "--pack", str(pack_dir), "--preset", args.preset, "--deadline", f"{train_deadline - 15:.1f}",
            "--calibrate-steps", str(args.calibrate_steps), "--weights-dir", str(args.weights_dir),
            "--threads", str(threads),
        ]  # fmt: skip
        if args.device:
            cmd += ["--device", args.device]
        logf = open(work / "runs" / key / "worker.log", "w")
        # its own process group (killed as one), in this session: nothing outlives the job
        procs[key] = subprocess.Popen(
            cmd, cwd=REPO_DIR, env=env, stdout=logf, stderr=subprocess.STDOUT, process_group=0
        )
        logf.close()
    event("started", keys=keys, threads_each=threads)
    try:
        # 3. The equal budget, once every calibration is in (or a quarter of the time has gone).
        calib_until = t_start + min(150.0, 0.3 * total)
        calibrated = [k for k in keys if k != "eigenface" and args.calibrate_steps > 0]
        while time.time() < calib_until:
            done = [k for k in calibrated if (work / "runs" / k / "calib.json").exists()]
            dead = [k for k in calibrated if procs[k].poll() is not None and k not in done]
            if len(done) + len(dead) == len(calibrated):
                break
            time.sleep(0.5)
        calib = {}
        for k in keys:
            p = work / "runs" / k / "calib.json"
            if p.exists():
                calib[k] = json.loads(p.read_text())
        rates = {k: c["real_img_s"] for k, c in calib.items() if c.get("real_img_s")}
        helpers = {k: cfgs[k].steps * cfgs[k].batch for k in keys if k not in RECIPES}
        seconds = train_deadline - 15 - time.time()
        step = max((cfgs[g].batch for g in gans), default=1)
        gan_images = equal_images(rates, helpers, gans, seconds, args.images, step)
        budget = {
            "images": dict.fromkeys(gans, gan_images),
            "seconds": round(seconds),
            "rates": rates,
        }
        _atomic_json(work / "budget.json", budget)
        device_name = next((c["env"]["device"] for c in calib.values() if "env" in c), "?")
        event(
            "budget",
            gan_images=gan_images,
            seconds=round(seconds),
            calibration={
                k: {x: c.get(x) for x in ("random_img_s", "real_img_s", "real_over_bound")}
                for k, c in calib.items()
            },
            env=next((c["env"] for c in calib.values() if "env" in c), {}),
        )

        # 4. Collect each network as it finishes; stop stragglers at the hard stop.
        bundles = Bundles(out)
        rows: dict[str, dict] = {}
        table_meta = {
            "device": device_name,
            "preset": args.preset,
            "train_faces": len(info["ids"]["train"]),
            "copies": info["copies"],
            "gan_images": gan_images,
        }
        pending = dict(procs)
        last_progress = time.time()
        while pending:
            for key, p in list(pending.items()):
                if p.poll() is None:
                    continue
                del pending[key]
                rows[key] = _collect(key, p.returncode, work, bundles, cfgs[key].batch, event)
                write_table(out, rows, table_meta)
            if pending and time.time() > hard_stop - reserve / 2:
                for p in pending.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGTERM)
                time.sleep(3)
                for key, p in list(pending.items()):
                    if p.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    rows[key] = _collect(key, "cut off", work, bundles, cfgs[key].batch, event)
                    del pending[key]
                write_table(out, rows, table_meta)
            if time.time() - last_progress > 60:
                last_progress = time.time()
                event("progress", **{k: _progress(work / "runs" / k) for k in pending})
            time.sleep(0.5)
    finally:  # an error here must not leave processes on the device (or the CPU)
        for p in procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    ok = [k for k, r in rows.items() if r["status"] in ("done", "budget")]
    event(
        "done",
        trained=ok,
        failed=sorted(set(keys) - set(ok)),
        wall_s=round(time.time() - t_start, 1),
    )
    if (out / "table.md").exists():
        print((out / "table.md").read_text(), flush=True)
    return 0 if len(ok) == len(keys) else 1


def _progress(run: Path) -> dict:
    from model.run_folder import RunFolder

    rows = RunFolder(run).log()
    last = rows[-1] if rows else {}
    return {k: last.get(k) for k in ("step", "images_seen", "wall_s")}


def _collect(key: str, rc, work: Path, bundles: Bundles, batch: int, event) -> dict:
    from model.run_folder import RunFolder

    run = work / "runs" / key
    summary = (
        json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    )
    calib = summary.get("calibration") or (
        json.loads((run / "calib.json").read_text()) if (run / "calib.json").exists() else {}
    )
    status = (
        "cut off" if rc == "cut off"
        else f"failed ({rc})" if rc != 0 or "weights" not in summary
        else "budget" if summary.get("stopped_by_budget") else "done"
    )  # fmt: skip
    folder = RunFolder(run)
    weights = [(f"{key}/weights/{p.name}", p) for p in sorted(folder.weights_dir.glob(f"{key}.*"))]
    logs = (run / "summary.json", run / "calib.json", folder.log_path, folder.config_path)
    small = [(f"{key}/{p.name}", p) for p in (*logs, run / "worker.log")]
    sample = folder.last_sample()
    optional = [(f"{key}/samples/{sample.name}", sample)] if sample else []
    where = bundles.add(weights + small, optional) if weights else bundles.add(small, [])
    if status.startswith(("failed", "cut")):
        tail = (run / "worker.log").read_text()[-3000:] if (run / "worker.log").exists() else ""
        event("failed", key=key, status=status, bundle=where, log_tail=tail)
    else:
        event(
            "finished",
            key=key,
            bundle=where,
            images_seen=summary.get("images_seen"),
            wall_s=summary.get("wall_s"),
            img_s=round(summary["images_seen"] / summary["wall_s"], 1)
            if summary.get("wall_s")
            else None,
            bound_img_s=calib.get("random_img_s"),
            validation=summary.get("validation"),
        )
    return {
        "summary": summary,
        "calibration": calib,
        "status": status,
        "batch": batch,
        "bundle": where,
    }


# --- here again: unpack and promote ------------------------------------------------------------------------


def unpack(args: argparse.Namespace) -> int:
    from model.checkpoint import WeightsError, load_weights
    from model.config import new_run_dir
    from model.methods import METHODS

    src = args.src
    tars = sorted(src.glob("bundle-*.tar"))
    if not tars:
        raise SystemExit(
            f"{src}: no bundle-*.tar (was the job cut off before any network finished?)"
        )
    run = args.run_dir or new_run_dir("gpu")
    run.mkdir(parents=True, exist_ok=True)
    for t in tars:
        with tarfile.open(t) as tar:
            for m in tar.getmembers():
                parts = Path(m.name).parts
                if not m.isfile() or m.name.startswith("/") or ".." in parts or len(parts) < 2:
                    raise SystemExit(f"{t}: unexpected member {m.name!r}")
            tar.extractall(run, filter="data")
    for name in ("job.jsonl", "table.md"):
        if (src / name).exists():
            shutil.copyfile(src / name, run / name)
    keys = sorted(p.parent.parent.name for p in run.glob("*/weights/*.safetensors"))
    print(f"unpacked {len(tars)} bundle(s) into {run}: {', '.join(keys) or 'no weights'}")
    status = 0
    for key in keys:
        try:
            _, card = load_weights(key, run / key / "weights")  # the sha256 check
        except WeightsError as err:
            print(f"  {key}: {err}")
            status = 1
            continue
        print(
            f"  {key}: {card.get('images_seen', 0):,} images, validation {card.get('validation')}"
        )
    if (run / "table.md").exists():
        print((run / "table.md").read_text())
    if not args.promote:
        for key in keys:
            print(_promote_hint(key, run, args.data))
        return status
    if args.data is None:
        raise SystemExit(
            "unmask gpu unpack --promote: --data DIR is required (its val faces decide)"
        )
    from model import promote

    for key in keys:
        how = "" if key in METHODS or key == "segmenter" else " (helper: by its card's validation)"
        print(f"\n== {key}{how}")
        promote.run(
            argparse.Namespace(
                run=run / key, data=args.data, faces=args.faces, weights_dir=args.weights_dir,
                force=False, device="cpu", templates=None,
            )
        )  # fmt: skip
    return status


def _promote_hint(key: str, run: Path, data: Path | None) -> str:
    return f"unmask promote --run {run / key} --data {data or 'data/utk'}"
