"""Study test helpers: synthetic stimuli registered through the service, and a real served app."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from support import free_port

from model.config import EXPRESSIONS, QUALITY, REPO_DIR
from study.db import make_engine
from study.http_client import StudyClient
from study.service import StudyService
from study.stimuli import build_synthetic_stimuli

ADMIN_TOKEN = "test-admin-token-0123456789"
OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
}


def make_study(folder: Path, **kw) -> StudyService:
    """A fresh SQLite study in `folder` with synthetic stimuli registered by the service itself."""
    stim = folder / "stimuli"
    rows = build_synthetic_stimuli(stim, **kw)
    service = StudyService(make_engine(folder / "study.sqlite"))
    service.register_stimuli(rows, stim)
    return service


def is_skip(value) -> bool:
    """An output an event left as it was (gr.skip(): an update with no property in it)."""
    if isinstance(value, dict) and "props" in value:
        value = value["props"]
    return value == {"__type__": "update"}


def changes_nothing(outputs: dict) -> bool:
    """Every output of a reply left as it was (a gr.State's slot never travels: None)."""
    return bool(outputs) and all(is_skip(v) for k, v in outputs.items() if k != "state")


def complete_session(url: str, code: str, rng: random.Random, double_every: int = 3) -> dict:
    """One rater from code to thank-you; every few trials the click is sent twice at once."""
    client = StudyClient(url)
    client.start(code)
    screen = client.begin()
    given = {}
    step = 0
    while not (screen := client.past_break(screen)).done:
        index = screen.trial_index
        assert screen.stage == "expression", screen
        expression = rng.choice(EXPRESSIONS)
        rt = rng.uniform(300, 3000)
        quality = rng.randint(QUALITY.lowest, QUALITY.highest)
        step += 1
        if step % double_every == 0:  # a double click: two identical requests in flight
            results = [None, None]

            def send(i, index=index, expression=expression, rt=rt, results=results):
                results[i] = client.answer(index, expression, rt)

            threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            screen = results[0]
            client.rate(index, quality)  # and the quality button pressed twice in a row
            screen = client.rate(index, quality)
        else:
            screen = client.answer(index, expression, rt)
            assert screen.stage == "quality" and screen.trial_index == index
            screen = client.rate(index, quality)
        given[index] = (expression, quality, rt)
    client.close()
    return given


class StudyServer:
    """`unmask study serve` in a subprocess on 127.0.0.1 (kill() is a crash: SIGKILL).

    `db` is a SQLite file or a database URL (e.g. a PostgreSQL one); `args` are more `serve`
    options, where "{PORT}" becomes the server's port.
    """

    def __init__(
        self, db: Path | str, log: Path, token: str = ADMIN_TOKEN, args: tuple[str, ...] = ()
    ):
        self.db, self.log_path, self.token = db, log, token
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> StudyServer:
        self.port = free_port()
        env = {**os.environ, **OFFLINE_ENV, "PYTHONUNBUFFERED": "1"}
        env.pop("DATABASE_URL", None)
        cmd = [sys.executable, "-m", "model", "study", "serve", "--db", str(self.db)]
        cmd += ["--port", str(self.port), "--token", self.token]
        cmd += [a.replace("{PORT}", str(self.port)) for a in self.args]
        self._log = self.log_path.open("a")
        self.proc = subprocess.Popen(cmd, cwd=REPO_DIR, env=env, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/study/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not up in {timeout}s: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._log.close()
