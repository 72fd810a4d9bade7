"""A real `unmask demo` server (untrained networks) shared by the gradio_client and browser tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support import free_port

from model.config import REPO_DIR

READY_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory) -> str:
    """URL of `python -m model demo` launched in a subprocess; stopped after the session.

    Host and port are given the way Gradio's users give them, in GRADIO_SERVER_NAME and
    GRADIO_SERVER_PORT (no flags): `unmask demo` must honour them (issue 14)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("demo-server") / "server.log"
    env = {**os.environ, "UNMASK_UNTRAINED": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "DATABASE_URL": f"sqlite:///{log_path.parent / 'study.sqlite'}",  # the study tab's DB
           "UNMASK_STUDY_TOKEN": "test-token"}  # fmt: skip
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "model", "demo"],
            cwd=REPO_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_ready(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"demo server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"demo server not ready in {READY_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def masked_astronaut_png(tmp_path_factory) -> Path:
    """The demo's first example: a close-up of skimage's astronaut wearing a synthetic mask."""
    import shutil

    from demo import service

    _caption, example = service.examples()[0]
    path = tmp_path_factory.mktemp("inputs") / Path(example).name
    shutil.copy(example, path)
    return path
