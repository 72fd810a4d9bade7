"""Machine rater vs people (analysis/agreement.py), and the report's online-study exclusion
rules (screened out, small viewport) with their counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import report
from analysis.agreement import agreement, read_proxy
from analysis.simulate import SimConfig, write


def test_agreement_of_cells(tmp_path):
    people = pd.DataFrame(
        {
            "expression": ["happy", "happy", "sad", "sad"],
            "method": ["telea", "real", "telea", "real"],
            "accuracy": [60.0, 95.0, 30.0, 80.0],
        }
    )
    proxy = tmp_path / "expression_proxy.csv"
    pd.DataFrame(
        {
            "expression": ["happy", "happy", "sad", "sad", "all", "happy"],
            "method": ["telea", "real", "telea", "real", "telea", "ceiling"],
            "kind": ["method", "real", "method", "real", "method", "ceiling"],
            "accuracy": [50.0, 90.0, 20.0, 70.0, 35.0, 99.0],
        }
    ).to_csv(proxy, index=False)
    machine = read_proxy(proxy)
    assert len(machine) == 4  # the "all" row and the ceiling are not cells
    a = agreement(people, machine)
    assert a.n_cells == 4
    assert np.isclose(a.pearson_r, np.corrcoef([60, 95, 30, 80], [50, 90, 20, 70])[0, 1])
    assert a.spearman_rho == 1.0 and np.isclose(a.mean_abs_diff, 8.75)
    assert "proxy, not people" in a.summary()
    assert read_proxy(tmp_path / "missing.csv") is None


def test_report_excludes_screen_outs_with_counts(tmp_path, capsys):
    cfg = SimConfig(participants=5, per_expression=1, inattentive=0, seed=1)
    export = pd.read_csv(write(tmp_path / "in", cfg))
    people = sorted(export["participant_id"].unique())
    export["screened_out"] = np.where(export["participant_id"] == people[0], "attention", "")
    export["viewport_width"] = np.where(export["participant_id"] == people[1], 390, 1280)
    export["viewport_height"] = 800
    csv = tmp_path / "online_export.csv"
    export.to_csv(csv, index=False)
    proxy = tmp_path / "proxy.csv"
    pd.DataFrame(
        [
            {"expression": e, "method": m, "kind": "method", "accuracy": 10.0 * i + j}
            for i, e in enumerate(sorted(export["expression_true"].unique()))
            for j, m in enumerate(sorted(export["method"].unique()))
        ]
    ).to_csv(proxy, index=False)
    code = report.main(
        [
            "--csv",
            str(csv),
            "--out",
            str(tmp_path / "out"),
            "--bootstrap",
            "20",
            "--no-plots",
            "--exclude-screened-out",
            "--min-viewport",
            "600x500",
            "--proxy",
            str(proxy),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "screened out online" in printed and "viewport smaller than 600x500" in printed
    assert "machine rater vs people" in printed
    excl = pd.read_csv(tmp_path / "out" / "exclusions_simulated.csv")
    rows = dict(zip(excl["rule"], excl["participants_excluded"], strict=True))
    assert rows["screened out online (failed attention checks, ...)"] == 1
    assert rows["viewport smaller than 600x500"] == 1
    t3 = pd.read_csv(tmp_path / "out" / "table3_simulated.csv")
    assert t3["n_participants"].max() == 3
    assert (tmp_path / "out" / "machine_agreement_simulated.csv").is_file()
