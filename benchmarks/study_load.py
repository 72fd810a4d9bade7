"""Load test of the study server: N raters complete whole sessions at once over the real HTTP API.

Reports the time to store a response (the expression click's request, from send to reply, which
includes committing it and returning the quality screen; and the quality click's, which also
brings the next picture), and counts lost, duplicated and altered responses (must all be 0).

    .venv/bin/python benchmarks/study_load.py                  # 50 raters, own server, temp dir
    .venv/bin/python benchmarks/study_load.py --think-ms 0     # stress: clicks back to back
    .venv/bin/python benchmarks/study_load.py --url http://127.0.0.1:7861 --token T   # a live server
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.config import EXPRESSIONS, QUALITY, set_offline_env  # noqa: E402
from study.http_client import StudyClient  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--raters", type=int, default=50)
    p.add_argument("--methods", default="all", help="methods of the synthetic stimulus set")
    p.add_argument("--per-expression", type=int, default=7, help="main faces per expression")
    p.add_argument("--practice", type=int, default=3)
    p.add_argument("--catch", type=int, default=4)
    p.add_argument("--size", type=int, default=256, help="synthetic image side (px)")
    p.add_argument(
        "--double-every", type=int, default=4, help="send every n-th click twice at once"
    )
    p.add_argument(
        "--think-ms",
        type=float,
        default=1000.0,
        help="mean pause before an expression click (half that before the rating); "
        "1000 is a fast rater (the paper's raters took ~5 s a picture); 0 is a stress test",
    )
    p.add_argument("--url", default=None, help="use a running server instead of starting one")
    p.add_argument("--token", default=None, help="its admin token (to read the export)")
    p.add_argument("--workdir", type=Path, default=None, help="keep the database here")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def start_server(workdir: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str, str]:
    from study.db import make_engine
    from study.service import StudyService
    from study.stimuli import build_synthetic_stimuli, resolve_methods

    db, stim = workdir / "study.sqlite", workdir / "stimuli"
    rows = build_synthetic_stimuli(
        stim,
        methods=resolve_methods(args.methods),
        per_expression=args.per_expression,
        n_practice=args.practice,
        n_catch=args.catch,
        size=args.size,
        seed=args.seed,
    )
    StudyService(make_engine(db)).register_stimuli(rows, stim)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "bench-" + os.urandom(8).hex()
    log = (workdir / "server.log").open("w")
    serve = [sys.executable, "-m", "model", "study", "serve", "--db", str(db), "--port", str(port)]
    proc = subprocess.Popen(
        [*serve, "--token", token], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "server.log").read_text()[-2000:])
        try:
            if httpx.get(f"{url}/study/health", timeout=2).status_code == 200:
                return proc, url, token
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start in 180 s")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (Linux /proc), to price a request on the server."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def rater(url: str, code: str, args, barrier, answer_ms, rate_ms, sent, errors) -> None:
    rng = random.Random(code)
    try:
        client = StudyClient(url)
        barrier.wait()
        client.start(code)
        screen = client.begin()
        clicks = 0
        while not (screen := client.past_break(screen)).done:
            index = screen.trial_index
            expression, quality = (
                rng.choice(EXPRESSIONS),
                rng.randint(QUALITY.lowest, QUALITY.highest),
            )
            rt = rng.uniform(400, 2500)
            if args.think_ms:  # looking at the face before the click
                time.sleep(args.think_ms / 1000 * rng.uniform(0.5, 1.5))
            clicks += 1
            repeats = 2 if args.double_every and clicks % args.double_every == 0 else 1

            def answer(index=index, expression=expression, rt=rt) -> None:
                t0 = time.perf_counter()
                client.answer(index, expression, rt)
                answer_ms.append((time.perf_counter() - t0) * 1000)

            threads = [threading.Thread(target=answer) for _ in range(repeats)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            if args.think_ms:  # reading the quality scale
                time.sleep(args.think_ms / 1000 * rng.uniform(0.25, 0.75))
            t0 = time.perf_counter()
            screen = client.rate(index, quality)
            rate_ms.append((time.perf_counter() - t0) * 1000)
            sent[(code, index)] = (expression, quality, round(rt, 3))
        client.close()
    except BaseException as exc:  # counted and shown, the other raters go on
        errors.append(f"{code}: {exc!r}")


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {}
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "p99": round(float(np.percentile(a, 99)), 1),
        "max": round(float(a.max()), 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_offline_env()
    proc = None
    tmp = None
    if args.url:
        url, token = args.url.rstrip("/"), args.token
    else:
        workdir = args.workdir or Path(tmp := tempfile.mkdtemp(prefix="study-load-"))
        workdir.mkdir(parents=True, exist_ok=True)
        proc, url, token = start_server(workdir, args)
    try:
        answer_ms: list[float] = []
        rate_ms: list[float] = []
        sent: dict[tuple[str, int], tuple] = {}
        errors: list[str] = []
        barrier = threading.Barrier(args.raters)
        tag = os.urandom(3).hex()
        codes = [f"load-{tag}-{i:03d}" for i in range(args.raters)]
        load_before = os.getloadavg()
        cpu_before = cpu_seconds(proc.pid if proc else None)
        client_cpu0 = time.process_time()
        t0 = time.perf_counter()
        threads = [
            threading.Thread(
                target=rater, args=(url, c, args, barrier, answer_ms, rate_ms, sent, errors)
            )
            for c in codes
        ]
        [t.start() for t in threads]
        [t.join() for t in threads]
        wall = time.perf_counter() - t0
        cpu_after = cpu_seconds(proc.pid if proc else None)
        n_requests = len(answer_ms) + len(rate_ms)

        stored: Counter[tuple[str, int]] = Counter()
        altered = 0
        if token:
            r = httpx.get(f"{url}/study/admin/export.csv", headers={"X-Study-Token": token})
            r.raise_for_status()
            for row in csv.DictReader(io.StringIO(r.text)):
                key = (row["participant_id"], int(row["trial_index"]))
                if key[0] not in codes:
                    continue
                stored[key] += 1
                want = sent.get(key)
                got = (row["expression_chosen"], int(row["quality"] or 0), float(row["rt_ms"]))
                if (
                    want is not None
                    and (got[0], got[1]) != want[:2]
                    or (want is not None and abs(got[2] - want[2]) > 1e-3)
                ):
                    altered += 1
        server_ms: dict[str, list[float]] = {}
        if token:
            r = httpx.get(f"{url}/study/admin/timings.json", headers={"X-Study-Token": token})
            if r.status_code == 200:
                for name, values in r.json().items():
                    kind = "answer" if name.startswith("study_answer") else name.split("_")[1]
                    server_ms.setdefault(kind, []).extend(values)
        lost = sum(1 for k in sent if stored.get(k, 0) == 0) if token else None
        duplicated = sum(n - 1 for n in stored.values() if n > 1) if token else None
        figures = {
            "raters": args.raters,
            "completed_sessions": args.raters - len({e.split(":")[0] for e in errors}),
            "responses_sent": len(sent),
            "responses_stored": sum(stored.values()) if token else None,
            "lost": lost,
            "duplicated": duplicated,
            "altered": altered if token else None,
            "errors": errors[:5],
            "store_response_ms": percentiles(answer_ms),
            "store_quality_and_next_ms": percentiles(rate_ms),
            # The same two events timed inside the server (request in -> reply out): without the
            # load-test client's own share of the CPU and its thread scheduling.
            "server_store_response_ms": percentiles(server_ms.get("answer", [])),
            "server_store_quality_and_next_ms": percentiles(server_ms.get("rate", [])),
            "client_cpu_ms_per_request": round(
                (time.process_time() - client_cpu0) * 1000 / max(n_requests, 1), 2
            ),
            "wall_s": round(wall, 1),
            "requests_per_s": round(n_requests / wall, 1),
            "server_cpu_ms_per_request": (
                None
                if cpu_before is None or cpu_after is None
                else round((cpu_after - cpu_before) * 1000 / max(n_requests, 1), 2)
            ),
            "double_every": args.double_every,
            "think_ms": args.think_ms,
            "image_px": args.size,
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if tmp:
        print(f"(database and server log kept in {tmp})", file=sys.stderr)
    ok = not errors and not lost and not duplicated and not altered
    for key in ("store_response_ms", "server_store_response_ms"):
        p95 = figures[key].get("p95", float("inf"))
        print(f"p95 {key} {p95} ms (target <= 250): {'met' if p95 <= 250 else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
