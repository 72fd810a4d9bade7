"""A seeded, realistic simulated study export (docs/DESIGN.md long format) for demos and tests.

Its file name says "simulated" and its participant codes start with "sim-", so every output
made from it is marked simulated (analysis.load.is_simulated). It is never a study result.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a plain script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from analysis.load import COLUMNS
from model.cli import HelpFormatter
from model.config import EXPRESSIONS, QUALITY, REAL, new_run_dir
from model.methods.registry import METHODS


@dataclass(frozen=True)
class Profile:
    """How raters see one method's pictures in the simulation."""

    quality: float  # latent mean quality on the study's scale (model.config.QUALITY)
    accuracy: float  # probability of naming the true expression, before the rater's own skill


# The paper's Table 3 levels, unmask a little above "landmark"; `real` is the unmasked original.
PROFILES: dict[str, Profile] = {
    "telea": Profile(1.5, 0.93),
    "patchmatch": Profile(2.2, 0.93),
    "eigenface": Profile(2.4, 0.90),
    "pix2pix": Profile(2.7, 0.92),
    "pix2pix_mask": Profile(3.6, 0.91),
    "dilated_se": Profile(4.5, 0.88),
    "landmark": Profile(4.8, 0.92),
    "unmask": Profile(5.2, 0.94),
    REAL: Profile(6.1, 0.97),
}
# A method this table has not heard of (a new registry entry): a middling one, so that adding a
# method to the registry never breaks the simulation.
UNKNOWN_PROFILE = Profile(3.5, 0.91)


def profile(method: str) -> Profile:
    return PROFILES.get(method, UNKNOWN_PROFILE)


# The paper's Table 5: without a mouth, happy is read as neutral, and surprise is harder.
EXPRESSION_PENALTY = {"neutral": 0.0, "happy": 0.12, "angry": 0.0, "sad": 0.04, "surprise": 0.05}
CONFUSED_WITH = {
    "neutral": "sad",
    "happy": "neutral",
    "angry": "sad",
    "sad": "neutral",
    "surprise": "happy",
}


@dataclass(frozen=True)
class SimConfig:
    participants: int = 20
    per_expression: int = 2  # trials per method and expression (paper: 10 per method)
    practice: int = 3
    catch: int = 4
    inattentive: int = 1  # participants answering at random (fail the catch trials)
    seed: int = 0
    methods: tuple[str, ...] | None = None  # the conditions besides `real`; None: every METHODS key


def simulate(cfg: SimConfig = SimConfig()) -> pd.DataFrame:
    """One row a trial (the export's columns, docs/DESIGN.md), shuffled order per participant."""
    rng = np.random.default_rng(cfg.seed)
    methods = [*(METHODS if cfg.methods is None else cfg.methods), REAL]
    n_faces = len(methods) * cfg.per_expression  # faces per expression; each seen once per rater
    q_face = rng.normal(0, 0.4, size=(len(EXPRESSIONS), n_faces))  # some faces inpaint worse
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    rows = []
    for p in range(cfg.participants):
        pid = f"sim-{p + 1:03d}"
        inattentive = p >= cfg.participants - cfg.inattentive
        bias, skill = rng.normal(0, 0.45), rng.normal(0, 0.03)
        speed = rng.normal(np.log(5200), 0.25)  # per-trial ms, log scale (paper: ~50-60 s / 10)
        trials = []
        for kind, n in (("practice", cfg.practice), ("catch", cfg.catch)):
            # Distinct faces per participant (the study never shows a face twice to one rater).
            for face in rng.choice(max(20, n), size=n, replace=False):
                trials.append((kind, REAL, str(rng.choice(EXPRESSIONS)), int(face)))
        main = []
        for e_i, expr in enumerate(EXPRESSIONS):
            # Rotate faces over methods by participant: each rater sees each face once, and every
            # face is seen under every method across raters (a Latin-square-like assignment).
            for f in range(n_faces):
                m = methods[(f + p) % len(methods)]
                main.append(("main", m, expr, f, e_i))
        order = rng.permutation(len(main))
        trials += [main[i][:4] for i in order]
        t = start + timedelta(days=p // 4, hours=p % 4)
        for idx, (kind, m, expr, face) in enumerate(trials):
            e_i = EXPRESSIONS.index(expr)
            if kind == "main":
                image_id = f"{expr}_{face:03d}"
                p_ok = (
                    profile(m).accuracy - (EXPRESSION_PENALTY[expr] if m != REAL else 0.0) + skill
                )
                latent = profile(m).quality + bias + q_face[e_i, face] + rng.normal(0, 0.8)
            else:
                image_id = f"{kind}_{face:03d}"
                p_ok, latent = 0.99, 6.3 + bias + rng.normal(0, 0.6)
            if inattentive:
                p_ok, latent = (
                    1 / len(EXPRESSIONS),
                    rng.uniform(QUALITY.lowest, QUALITY.highest + 0.5),
                )
            if rng.random() < min(p_ok, 1.0):
                chosen = expr
            elif rng.random() < 0.6:
                chosen = CONFUSED_WITH[expr]
            else:
                chosen = rng.choice([x for x in EXPRESSIONS if x != expr])
            quality = int(np.clip(np.rint(latent), QUALITY.lowest, QUALITY.highest))
            rt = np.exp(
                speed
                + rng.normal(0, 0.35)
                - 0.04 * (latent - 4)
                + (0.5 if kind == "practice" else 0)
            )
            if inattentive:
                rt *= 0.35
            if rng.random() < 0.01:  # the odd lapse (phone rang) or double click
                rt = float(rng.choice([rng.uniform(90_000, 200_000), rng.uniform(80, 200)]))
            t += timedelta(milliseconds=float(rt) + float(rng.uniform(1500, 4000)))
            rows.append(
                {
                    "participant_id": pid,
                    "trial_index": idx,
                    "stimulus_id": f"{image_id}__{m}",
                    "image_id": image_id,
                    "method": m,
                    "expression_true": expr,
                    "expression_chosen": chosen,
                    "correct": int(chosen == expr),
                    "quality": quality,
                    "rt_ms": round(float(rt), 1),
                    "is_practice": int(kind == "practice"),
                    "is_catch": int(kind == "catch"),
                    "answered_at": t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write(out_dir: str | Path, cfg: SimConfig = SimConfig()) -> Path:
    """Write the simulated export; the file name always contains "simulated"."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"study_export_simulated_seed{cfg.seed}_n{cfg.participants}.csv"
    simulate(cfg).to_csv(path, index=False)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument(
        "--out",
        default=None,
        help="folder for the CSV (default: a new runs/simulate/<UTC time>/)",
    )
    ap.add_argument("--participants", type=int, default=SimConfig.participants, help="raters")
    ap.add_argument(
        "--per-expression",
        type=int,
        default=SimConfig.per_expression,
        help="main trials per method and expression, per rater",
    )
    ap.add_argument(
        "--inattentive",
        type=int,
        default=SimConfig.inattentive,
        help="raters answering at random (they fail the catch trials)",
    )
    ap.add_argument("--seed", type=int, default=SimConfig.seed, help="random seed")
    a = ap.parse_args(argv)
    cfg = SimConfig(
        participants=a.participants,
        per_expression=a.per_expression,
        inattentive=min(a.inattentive, a.participants),
        seed=a.seed,
    )
    path = write(a.out if a.out else new_run_dir("simulate"), cfg)
    print(f"wrote SIMULATED study export {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
