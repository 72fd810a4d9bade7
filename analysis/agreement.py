"""Machine rater vs people: per method x expression accuracy of the expression classifier
(`unmask eval --expressions`, results/metrics/expression_proxy.csv) against the study's Table 5.

The proxy is a classifier on landmark geometry, not a person: the correlation says how far its
ranking of methods and expressions follows the raters', nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from model.config import REPO_DIR

PROXY_CSV = REPO_DIR / "results" / "metrics" / "expression_proxy.csv"


@dataclass(frozen=True)
class Agreement:
    n_cells: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float
    mean_abs_diff: float  # percentage points, machine - people
    cells: pd.DataFrame  # expression, method, people, machine

    def summary(self) -> str:
        if self.n_cells < 3:
            return f"machine rater vs people: only {self.n_cells} shared cell(s), no correlation"
        return (
            f"machine rater vs people (accuracy per method x expression, {self.n_cells} cells): "
            f"Pearson r = {self.pearson_r:.2f} (p = {self.pearson_p:.3g}), Spearman rho = "
            f"{self.spearman_rho:.2f} (p = {self.spearman_p:.3g}), mean |machine - people| = "
            f"{self.mean_abs_diff:.1f} points. The machine rater is a landmark classifier, "
            "a proxy, not people."
        )


def read_proxy(path: str | Path = PROXY_CSV) -> pd.DataFrame | None:
    """The proxy's per expression x condition cells (expression, method, accuracy %), or None."""
    path = Path(path)
    if not path.is_file():
        return None
    t = pd.read_csv(path)
    t = t[t["expression"] != "all"]
    if "kind" in t:
        t = t[t["kind"].isin(["method", "real", "masked"])]
    return t[["expression", "method", "accuracy"]]


def agreement(people_t5: pd.DataFrame, machine: pd.DataFrame) -> Agreement:
    """Correlate the people's Table 5 cells (expression, method, accuracy %) with the machine's."""
    cells = people_t5.rename(columns={"accuracy": "people"}).merge(
        machine.rename(columns={"accuracy": "machine"}), on=["expression", "method"]
    )
    cells = cells.dropna(subset=["people", "machine"]).reset_index(drop=True)
    n = len(cells)
    nan = float("nan")
    if n < 3 or cells["people"].nunique() < 2 or cells["machine"].nunique() < 2:
        r = p = rho = p_rho = nan
    else:
        r, p = sps.pearsonr(cells["people"], cells["machine"])
        rho, p_rho = sps.spearmanr(cells["people"], cells["machine"])
    diff = float(np.mean(np.abs(cells["machine"] - cells["people"]))) if n else nan
    return Agreement(n, float(r), float(p), float(rho), float(p_rho), diff, cells)
