"""The study's figures (PNG): quality distribution per method, accuracy heatmap expression x method,
duration per method. Plots made from simulated data say so in their title and file name.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.stats import participant_duration  # noqa: E402
from analysis.tables import label, out_name  # noqa: E402
from model.config import QUALITY  # noqa: E402

SIM_TAG = "  [SIMULATED DATA]"


def quality_distribution(
    main: pd.DataFrame, methods: list[str], path: Path, simulated: bool
) -> Path:
    """Stacked shares of each level of the quality scale per method, with the mean rating marked."""
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(methods) + 1.6))
    levels = QUALITY.levels
    colours = plt.get_cmap("RdYlGn")(np.linspace(0.05, 0.95, len(levels)))
    ys = np.arange(len(methods))[::-1]
    for y, m in zip(ys, methods, strict=True):
        q = main.loc[main["method"] == m, "quality"].dropna().astype(int)
        if q.empty:
            ax.text(0.5, y, "no ratings", ha="center", va="center", fontsize=9)
            continue
        share = np.array([(q == level).sum() for level in levels]) / len(q)
        left = 0.0
        for level, s, c in zip(levels, share, colours, strict=True):
            ax.barh(
                y,
                s,
                left=left,
                color=c,
                edgecolor="white",
                linewidth=0.5,
                label=str(level) if y == ys[0] else None,
            )
            left += s
        ax.plot((q.mean() - levels[0]) / (levels[-1] - levels[0]), y, "kD", ms=5)
    ax.set_yticks(ys, [label(m) for m in methods])
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of ratings (◆ = mean rating, placed on the {QUALITY.span} scale)")
    ax.legend(
        title="quality",
        ncol=len(levels),
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        fontsize=8,
        frameon=False,
    )
    ax.set_title("Quality ratings per method" + (SIM_TAG if simulated else ""), pad=34)
    return _save(fig, path)


def accuracy_heatmap(wide: pd.DataFrame, path: Path, simulated: bool) -> Path:
    """% correct per expression (rows) x method (columns), averages included."""
    fig, ax = plt.subplots(figsize=(0.95 * wide.shape[1] + 2.5, 0.5 * wide.shape[0] + 2.2))
    vals = wide.to_numpy(dtype=float)
    im = ax.imshow(
        np.ma.masked_invalid(vals),
        cmap="viridis",
        vmin=max(0, np.nanmin(vals) - 5) if np.isfinite(vals).any() else 0,
        vmax=100,
    )
    for (i, j), v in np.ndenumerate(vals):
        if np.isfinite(v):
            ax.text(
                j, i, f"{v:.0f}", ha="center", va="center", color="w" if v < 80 else "k", fontsize=9
            )
    ax.set_xticks(range(wide.shape[1]), [label(c) for c in wide.columns], rotation=30, ha="right")
    ax.set_yticks(range(wide.shape[0]), [str(e).capitalize() for e in wide.index])
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    ax.set_title("Expression accuracy (%)" + (SIM_TAG if simulated else ""))
    return _save(fig, path)


def duration_per_method(
    main: pd.DataFrame, methods: list[str], path: Path, simulated: bool
) -> Path:
    """Per-participant total seconds per method: box plot with every participant as a dot."""
    dur = participant_duration(main, methods)
    fig, ax = plt.subplots(figsize=(1.0 * len(methods) + 2, 4))
    data = [dur[m].dropna().to_numpy() for m in methods]
    ax.boxplot([d if len(d) else [np.nan] for d in data], showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.plot(i + rng.uniform(-0.15, 0.15, len(d)), d, "o", ms=3, alpha=0.6, color="tab:blue")
    ax.set_xticks(range(1, len(methods) + 1), [label(m) for m in methods], rotation=30, ha="right")
    ax.set_ylabel("total time per participant (s)")
    ax.set_title("Duration per method" + (SIM_TAG if simulated else ""))
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(
    out: Path, main: pd.DataFrame, methods: list[str], t5_wide: pd.DataFrame, simulated: bool
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [
        quality_distribution(
            main, methods, out / out_name("quality_by_method", "png", simulated), simulated
        ),
        accuracy_heatmap(t5_wide, out / out_name("accuracy_heatmap", "png", simulated), simulated),
        duration_per_method(
            main, methods, out / out_name("duration_by_method", "png", simulated), simulated
        ),
    ]
