"""Helpers the test packages share (not fixtures): a free port, Debian's Chromium under Playwright."""

from __future__ import annotations

import contextlib

import pytest


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server a test launches."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Debian's Chromium, as SETUP-FACTS.md checked it: no sandbox (root), no GPU, no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def chromium_browser():
    """A headless Playwright browser on Debian's /usr/bin/chromium; skips when it is missing
    (`.ci/run` installs it; Playwright's own browser download does not work offline)."""
    import shutil
    from pathlib import Path

    exe = (
        Path("/usr/bin/chromium")
        if Path("/usr/bin/chromium").exists()
        else shutil.which("chromium")
    )
    if not exe:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; see .ci/run)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(exe), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
