"""A tiny study export worked out by hand (2 participants x 3 methods x 2 trials) for the analysis tests."""

from __future__ import annotations

import pandas as pd

from analysis.load import COLUMNS
from model.config import QUALITY

# (participant, method, image, expression_true, expression_chosen, quality, rt_ms)
HAND_TRIALS = [
    ("P1", "telea", "h1", "happy", "happy", 2, 4000),
    ("P1", "telea", "s1", "sad", "neutral", 1, 6000),
    ("P1", "landmark", "h2", "happy", "happy", 5, 3000),
    ("P1", "landmark", "s2", "sad", "sad", 4, 5000),
    ("P1", "real", "h3", "happy", "happy", 7, 2000),
    ("P1", "real", "s3", "sad", "sad", 6, 2000),
    ("P2", "telea", "h1", "happy", "happy", 3, 5000),
    ("P2", "telea", "s1", "sad", "sad", 2, 5000),
    ("P2", "landmark", "h2", "happy", "neutral", 4, 4000),
    ("P2", "landmark", "s2", "sad", "sad", 5, 6000),
    ("P2", "real", "h3", "happy", "happy", 6, 3000),
    ("P2", "real", "s3", "sad", "sad", 7, 1000),
]


def hand_frame(practice_and_catch: bool = True) -> pd.DataFrame:
    """The hand fixture as a docs/DESIGN.md export; P1 also has a practice and a (failed) catch trial
    with absurd values that must never reach a table."""
    rows = []
    per_pid: dict[str, int] = {}
    for pid, m, img, et, ec, q, rt in HAND_TRIALS:
        i = per_pid.setdefault(pid, 0)
        per_pid[pid] += 1
        rows.append(_row(pid, i + 2, m, img, et, ec, q, rt, 0, 0))
    if practice_and_catch:
        rows.append(_row("P1", 0, "telea", "p0", "angry", "angry", 7, 999_999, 1, 0))
        rows.append(_row("P1", 1, "real", "c0", "surprise", "happy", 1, 1, 0, 1))
        rows.append(_row("P2", 0, "real", "c1", "surprise", "surprise", 7, 1500, 0, 1))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _row(pid, idx, m, img, et, ec, q, rt, prac, catch) -> dict:
    return {
        "participant_id": pid,
        "trial_index": idx,
        "stimulus_id": f"{img}__{m}",
        "image_id": img,
        "method": m,
        "expression_true": et,
        "expression_chosen": ec,
        "correct": int(et == ec),
        "quality": q,
        "rt_ms": rt,
        "is_practice": prac,
        "is_catch": catch,
        "answered_at": f"2026-11-02T09:{idx:02d}:00.000Z",
    }


def twenty_frame(seed: int = 0) -> pd.DataFrame:
    """20 participants x 3 methods (telea, landmark, real) x 2 expressions (happy, sad), seeded,
    plus a single `unmask` trial (P00's) in the whole study: the sparse-method case."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    base = {"telea": 2.5, "landmark": 4.0, "real": 6.0}
    for p in range(20):
        pid = f"P{p:02d}"
        idx = 0
        for m, q in base.items():
            for e, img in (("happy", "h"), ("sad", "s")):
                chosen = (
                    e
                    if rng.random() < {"telea": 0.6, "landmark": 0.75, "real": 0.9}[m]
                    else "neutral"
                )
                quality = int(
                    np.clip(round(q + rng.normal(0, 1.2)), QUALITY.lowest, QUALITY.highest)
                )
                rt = float(np.exp(rng.normal(8.0 - 0.1 * quality, 0.3)))
                rows.append(_row(pid, idx, m, f"{img}{p % 4}", e, chosen, quality, rt, 0, 0))
                idx += 1
        if p == 0:
            rows.append(_row(pid, idx, "unmask", "h9", "happy", "happy", 5, 3500.0, 0, 0))
    return pd.DataFrame(rows, columns=list(COLUMNS))
