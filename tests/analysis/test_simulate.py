"""The simulator takes any method key: the registry's, and one it has never heard of (a new
registry entry must not break it), and the analysis runs on what it writes."""

from __future__ import annotations

from analysis import report, stats
from analysis.load import read_csv
from analysis.simulate import PROFILES, UNKNOWN_PROFILE, SimConfig, profile, simulate, write
from model.config import QUALITY, REAL
from model.methods.registry import METHODS

NEW = "brand_new_method"  # in no table: neither the registry nor the simulator's profiles


def test_every_registry_method_is_simulated_by_default():
    df = simulate(SimConfig(participants=2, per_expression=1))
    assert set(df["method"]) == {*METHODS, REAL}


def test_a_method_the_simulator_has_never_heard_of(tmp_path):
    assert NEW not in PROFILES and NEW not in METHODS
    assert profile(NEW) == UNKNOWN_PROFILE
    cfg = SimConfig(participants=6, per_expression=1, methods=("telea", NEW), seed=1)
    df = simulate(cfg)
    main = df[(df["is_practice"] == 0) & (df["is_catch"] == 0)]
    assert set(main["method"]) == {"telea", NEW, REAL}
    assert main.groupby("method").size().nunique() == 1  # every condition equally often
    assert df["quality"].between(QUALITY.lowest, QUALITY.highest).all()
    # The analysis keeps the unknown key (after the registry's) and tabulates it.
    data = read_csv(write(tmp_path, cfg))
    assert data.simulated and data.methods == ["telea", NEW, REAL]
    result = report.analyse(data, stats.Exclusions(), n_boot=50)
    assert NEW in result["methods"] and NEW in result["t3"].to_string()
