"""Load test of the demo: N visitors at once through the real HTTP API (gradio_client).

Each visitor uploads photos one after another and, for each, does what a person does: prepare
(upload: face finding, CenterFace for masked faces, segmenter) -> run all methods -> download the
zip. Photos: real masked photos from ../shared/data/real-masked/images mixed with generated ones
(the demo's masked astronaut close-ups, turned and resized: dlib's HOG misses them, so every
upload reaches CenterFace); generated only when the research data is absent. Counts errors (a
client exception or a "went wrong on our side" message) and crashes (the server process gone):
both must be 0. Reports p50 / p95 / max seconds per step, as the visitor waits for it (queueing
included: runs go one at a time, uploads two at a time).

    .venv/bin/python benchmarks/demo_load.py                      # 20 visitors x 2 photos, own server
    .venv/bin/python benchmarks/demo_load.py --visitors 4 --photos-each 2 --untrained
    .venv/bin/python benchmarks/demo_load.py --url http://127.0.0.1:7860/   # a running demo
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.config import set_offline_env, shared_data_dir  # noqa: E402

STEPS = ("prepare", "run", "download")
# What the demo says when something failed on the server (not the visitor's photo).
SERVER_FAILURE = "went wrong on our side"
READY_TIMEOUT_S = 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--visitors", type=int, default=20, help="visitors at once")
    p.add_argument("--photos-each", type=int, default=2, help="photos each visitor uploads")
    p.add_argument(
        "--photos",
        choices=("mix", "real", "generated"),
        default="mix",
        help="real masked photos, generated masked faces, or both alternating (default; "
        "generated only when ../shared/data is absent)",
    )
    p.add_argument("--seed", type=int, default=0, help="which real photos")
    p.add_argument("--untrained", action="store_true", help="server with untrained networks")
    p.add_argument("--url", default=None, help="use a running demo instead of starting one")
    p.add_argument("--timeout", type=float, default=1800, help="seconds a visitor may take")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args(argv)


# --- photos -------------------------------------------------------------------------------------


def generated_photos(folder: Path) -> list[Path]:
    """Masked faces made now from skimage's astronaut (the demo's examples), each also turned
    20 degrees and resized: PNGs in `folder`. dlib's HOG finds none of them."""
    import cv2
    from PIL import Image

    from demo import service

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (caption, path) in enumerate(service.examples()):
        if "no mask" in caption:
            continue
        photo = np.asarray(Image.open(path).convert("RGB"))
        h, w = photo.shape[:2]
        turned = cv2.warpAffine(
            photo,
            cv2.getRotationMatrix2D((w / 2, h / 2), 20 if i % 2 else -20, 1.0),
            (w, h),
            borderMode=cv2.BORDER_REFLECT,
        )
        side = 320 + 96 * i
        for name, image in (
            (f"gen{i}", photo),
            (f"gen{i}_turned", cv2.resize(turned, (side, side))),
        ):
            target = folder / f"{name}.png"
            Image.fromarray(image).save(target)
            out.append(target)
    return out


def real_photos() -> list[Path]:
    folder = shared_data_dir() / "real-masked" / "images"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def photo_plan(
    visitors: int, each: int, kind: str, generated: list[Path], real: list[Path], seed: int
) -> list[list[Path]]:
    """The photos of each visitor: real and generated alternating for "mix"."""
    rng = random.Random(seed)
    real = rng.sample(real, len(real))
    plan, r, g = [], 0, 0
    for v in range(visitors):
        photos = []
        for j in range(each):
            use_real = real and (kind == "real" or (kind == "mix" and (v + j) % 2 == 0))
            if use_real:
                photos.append(real[r % len(real)])
                r += 1
            else:
                photos.append(generated[g % len(generated)])
                g += 1
        plan.append(photos)
    return plan


# --- server -------------------------------------------------------------------------------------


def start_server(workdir: Path, untrained: bool) -> tuple[subprocess.Popen, str, Path]:
    """`python -m model demo` on a free port, as `make demo` runs it; returns (process, url, log)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "DATABASE_URL": f"sqlite:///{workdir / 'study.sqlite'}", "UNMASK_STUDY_TOKEN": "load",
           "UNMASK_UNTRAINED": "1" if untrained else ""}  # fmt: skip
    log = workdir / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "model", "demo"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not alive(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"demo server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc, url, log


def alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "gradio_api/info", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


# --- visitors -----------------------------------------------------------------------------------


@dataclass
class Tally:
    """Everything the visitors measured; one lock, many threads."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # photos the demo declined, with its message
    no_mask: int = 0  # photos whose predicted mask was empty (a synthetic mask was added)
    photos_done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def time(self, step: str, seconds: float) -> None:
        with self.lock:
            self.seconds[step].append(seconds)

    def error(self, where: str, detail: str) -> None:
        with self.lock:
            self.errors.append(f"{where}: {detail[:300]}")


def visitor(
    url: str, name: str, photos: list[Path], keys: list[str], barrier, tally: Tally, downloads: Path
) -> None:
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, download_files=str(downloads / name))
    except Exception as err:
        tally.error(f"{name} connect", repr(err))
        return
    barrier.wait()  # everybody uploads at once
    for photo in photos:
        where = f"{name} {photo.name}"
        try:
            t0 = time.perf_counter()
            status = client.predict(handle_file(str(photo)), api_name="/prepare")[0]
            tally.time("prepare", time.perf_counter() - t0)
            if SERVER_FAILURE in status:
                tally.error(f"{where} prepare", status)
                continue
            if "⚠" in status:  # the photo declined with a reason (e.g. no face): not a failure
                with tally.lock:
                    tally.refused.append(f"{photo.name}: {status.strip('*⚠ ')}")
                continue
            t0 = time.perf_counter()
            status, _editor, gallery, *_ = client.predict(None, keys, None, api_name="/run")
            # The segmenter saw no mask ("nothing to remove"), or an empty region: add one, rerun.
            if "nothing to remove" in status or "mask region is empty" in status:
                with tally.lock:
                    tally.no_mask += 1
                client.predict("surgical", 0, api_name="/add_synthetic_mask")
                status, _editor, gallery, *_ = client.predict(None, keys, None, api_name="/run")
            tally.time("run", time.perf_counter() - t0)
            results = [g for g in gallery if " · " in (g.get("caption") or "")]
            if SERVER_FAILURE in status or not results:
                tally.error(f"{where} run", status or "no results")
                continue
            t0 = time.perf_counter()
            zip_path = client.predict(api_name="/download")
            tally.time("download", time.perf_counter() - t0)
            if not (zip_path and Path(zip_path).stat().st_size > 0):
                tally.error(f"{where} download", f"no zip ({zip_path})")
                continue
            with tally.lock:
                tally.photos_done += 1
        except Exception as err:
            tally.error(where, "".join(traceback.format_exception_only(err)).strip())


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "max": round(float(a.max()), 2),
    }


def run_load(
    url: str, plan: list[list[Path]], keys: list[str], workdir: Path, timeout: float
) -> tuple[Tally, float]:
    """All visitors at once; returns the tally and the wall time."""
    tally = Tally()
    barrier = threading.Barrier(len(plan))
    threads = [
        threading.Thread(
            target=visitor,
            args=(url, f"v{i:02d}", photos, keys, barrier, tally, workdir / "downloads"),
            daemon=True,
        )
        for i, photos in enumerate(plan)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            barrier.abort()
            tally.error(t.name, f"visitor still waiting after {timeout:.0f} s")
    return tally, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_offline_env()
    from model.methods import METHODS

    keys = list(METHODS)
    workdir = Path(tempfile.mkdtemp(prefix="demo-load-"))
    real = real_photos() if args.photos != "generated" else []
    if args.photos == "real" and not real:
        print("no real masked photos at ../shared/data/real-masked: using generated ones")
    generated = generated_photos(workdir / "generated")
    plan = photo_plan(args.visitors, args.photos_each, args.photos, generated, real, args.seed)

    proc = log = None
    url = args.url
    if url is None:
        proc, url, log = start_server(workdir, args.untrained)
    try:
        tally, wall = run_load(url, plan, keys, workdir, args.timeout)
        crashed = (proc is not None and proc.poll() is not None) or not alive(url)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    server_tracebacks = log.read_text(errors="replace").count("Traceback") if log else None
    photos = [p for visit in plan for p in visit]
    figures = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at the end",
        "url": url if args.url else "own server (python -m model demo)",
        "untrained_networks": args.untrained,
        "visitors": args.visitors,
        "photos_each": args.photos_each,
        "photos_real": sum(p in set(real) for p in photos),
        "photos_generated": sum(p not in set(real) for p in photos),
        "methods": keys,
        "photos_done": tally.photos_done,
        "refused": tally.refused,
        "synthetic_mask_added": tally.no_mask,
        "errors": tally.errors,
        "crashes": int(crashed),
        "server_tracebacks": server_tracebacks,
        "wall_seconds": round(wall, 1),
        "seconds": {step: percentiles(v) for step, v in tally.seconds.items()},
    }
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    ok = not tally.errors and not crashed
    print(f"errors {len(tally.errors)}, crashes {int(crashed)}: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
