"""Dataset-builder throughput: faces per second for N UTKFace images at 1 and 2 workers.

Run by hand: `.venv/bin/python benchmarks/data_build.py --n 300 --workers 1 2`. Each run is a
fresh `unmask data build` process. Wall-clock figures depend on what else the machine runs, so
CPU seconds and the load average are printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.config import shared_data_dir  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and every finished descendant (the builds and their workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main() -> int:
    shared = shared_data_dir()
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--faces", type=Path, default=shared / "utkface" / "images")
    p.add_argument("--templates", type=Path, default=shared / "masktheface")
    p.add_argument("--no-templates", action="store_true", help="procedural masks only")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    if not args.faces.is_dir():
        print(f"no images at {args.faces}: set UNMASK_SHARED_DATA or --faces", file=sys.stderr)
        return 2
    templates = None if args.no_templates or not args.templates.is_dir() else args.templates

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "faces"
        src.mkdir()
        for f in sorted(args.faces.iterdir())[: args.n]:
            (src / f.name).symlink_to(f.resolve())
        for workers in args.workers:
            # A fresh process per run, as `unmask data build` is used: fork start, cold models.
            out = Path(tmp) / f"out_{workers}"
            cmd = [sys.executable, "-m", "model.cli", "data", "build", "--faces", str(src)]
            cmd += ["--out", str(out), "--workers", str(workers)]
            cmd += ["--templates", str(templates)] if templates else []
            load = os.getloadavg()[0]
            c0, t0 = cpu_seconds(), time.perf_counter()
            subprocess.run(
                cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            report = json.loads((out / "report.json").read_text())
            n, ok, build_s = report["total"], report["counts"].get("ok", 0), report["seconds"]
            rows.append(
                (workers, n, ok, wall, build_s, ok / build_s, ok / wall, cpu, n / cpu, load)
            )

    print(
        f"\n{args.n} images from {args.faces}; templates: {templates or 'none'}; {os.cpu_count()} cores"
    )
    head = ("workers", "files", "ok", "wall s", "build s", "faces/s", "faces/s wall", "cpu s")
    head += ("files/cpu-s", "load avg")
    print(" | ".join(f"{h:>12}" for h in head))
    for w, n, ok, wall, build_s, okps, okpw, cpu, fpc, load in rows:
        cells = (w, n, ok, f"{wall:.1f}", f"{build_s:.1f}", f"{okps:.1f}", f"{okpw:.1f}")
        cells += (f"{cpu:.1f}", f"{fpc:.1f}", f"{load:.1f}")
        print(" | ".join(f"{c!s:>12}" for c in cells))
    print(
        "build s: the builder's own time (report.json); wall s adds Python start-up and model loading."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
