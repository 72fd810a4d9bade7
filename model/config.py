"""Project-wide facts kept in one place: image size, expression vocabulary and quality scale, paths,
env defaults.

Imports nothing heavy (no torch, no gradio) so every package, the analysis included, can use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Working space: a face aligned to IMAGE_SIZE x IMAGE_SIZE from its 68 landmarks.
IMAGE_SIZE = 256

# The study's expression vocabulary (Yoshihashi et al. 2022), in display order.
EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "angry", "sad", "surprise")


@dataclass(frozen=True)
class RatingScale:
    """A whole-number rating scale and the words at its two ends."""

    lowest: int
    highest: int
    lowest_word: str
    highest_word: str

    @property
    def levels(self) -> range:
        return range(self.lowest, self.highest + 1)

    @property
    def span(self) -> str:
        """ "1–7", for labels."""
        return f"{self.lowest}\u2013{self.highest}"

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value in self.levels


# The study's picture-quality rating (Yoshihashi et al. 2022), beside its expression choice: the
# one place its range and words are written. The study's buttons, its database check, the
# analysis's validation, histograms and plots read it here.
QUALITY = RatingScale(1, 7, "worst", "best")


# Pseudo-methods used by evaluation and the study beside the registry's methods.
REAL = "real"  # the unmasked original
MASKED = "masked"  # the masked input (evaluation floor)

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"
PRESETS_DIR = PACKAGE_DIR / "presets"
RESULTS_DIR = Path(os.environ.get("UNMASK_RESULTS", REPO_DIR / "results"))


def shared_data_dir() -> Path:
    """The research-only data folder (never committed): $UNMASK_SHARED_DATA or ../shared/data."""
    env = os.environ.get("UNMASK_SHARED_DATA")
    if env:
        return Path(env)
    return REPO_DIR.parent / "shared" / "data"


def set_offline_env() -> None:
    """Stop gradio / huggingface from phoning home (analytics, version check, telemetry)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


# Where commands write by default (relative to the working directory, as `unmask train`'s run
# folders; /runs/ is git-ignored). Writing into results/ is always an explicit --out.
RUNS_DIR = Path("runs")


def new_run_dir(kind: str) -> Path:
    """A new, empty folder runs/<kind>/<UTC time> (created; "-2", "-3", ... when two runs start
    in the same second), so that a default output never overwrites an earlier one."""
    import datetime as dt

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    parent = RUNS_DIR / kind
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{parent}: no free run folder for {stamp}")
