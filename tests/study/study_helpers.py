"""Study test helpers: synthetic stimuli registered through the service, and a real served app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from support import free_port

from model.config import REPO_DIR
from study.db import make_engine
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


class StudyServer:
    """`unmask study serve` in a subprocess on 127.0.0.1 (kill() is a crash: SIGKILL)."""

    def __init__(self, db: Path, log: Path, token: str = ADMIN_TOKEN):
        self.db, self.log_path, self.token = db, log, token
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
