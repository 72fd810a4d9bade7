"""analysis.load: the long-format export is validated with clear messages, never a crash."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.load import COLUMNS, StudyDataError, method_order, read_csv, validate
from model.config import QUALITY
from model.methods.registry import METHODS
from tests.analysis.fixtures import hand_frame


def _csv(tmp_path, df: pd.DataFrame, name: str = "export.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_reads_the_hand_fixture(tmp_path):
    data = read_csv(_csv(tmp_path, hand_frame()))
    assert data.methods == ["telea", "landmark", "real"]  # registry order, real last
    assert len(data.trials) == 15 and len(data.main) == 12
    assert data.messages == [] and not data.simulated
    assert list(data.trials.columns) == list(COLUMNS)


def test_simulated_is_detected_from_the_file_name(tmp_path):
    assert read_csv(_csv(tmp_path, hand_frame(), "study_export_simulated.csv")).simulated


def test_missing_file_and_columns_are_clear_errors(tmp_path):
    with pytest.raises(StudyDataError, match="no such CSV"):
        read_csv(tmp_path / "nope.csv")
    with pytest.raises(StudyDataError, match="missing column.*quality"):
        read_csv(_csv(tmp_path, hand_frame().drop(columns=["quality"])))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(StudyDataError, match="not a readable CSV"):
        read_csv(tmp_path / "empty.csv")
    with pytest.raises(StudyDataError, match="no rows"):
        read_csv(_csv(tmp_path, hand_frame().iloc[:0]))


def test_unknown_columns_and_values_are_reported_not_fatal(tmp_path):
    df = hand_frame()
    df["browser"] = "firefox"
    df.loc[0, "expression_true"] = "disgust"  # not in the vocabulary: row dropped
    df.loc[1, "quality"] = QUALITY.highest + 2  # off the scale: treated as missing
    df.loc[2, "expression_chosen"] = "???"  # counts as wrong
    df.loc[3, "correct"] = 0  # disagrees with the expressions: recomputed
    df.loc[4, "rt_ms"] = -5
    df.loc[5, "method"] = "Some_New_GAN"  # unknown to the registry: kept, after the registry's
    data = read_csv(_csv(tmp_path, df))
    text = "\n".join(data.messages)
    for needle in (
        "browser",
        "disgust",
        "quality value",
        "expression_chosen outside",
        "recomputed",
        "rt_ms",
        "some_new_gan",
    ):
        assert needle in text.lower(), needle
    assert len(data.trials) == 14
    assert data.methods == ["telea", "landmark", "some_new_gan", "real"]
    row = data.trials.set_index("stimulus_id")
    assert row.loc["s2__landmark", "correct"].tolist() == [1, 1]  # recomputed, not the given 0
    assert row.loc["h2__landmark", "correct"].tolist() == [0, 0]  # "???" is not an answer


def test_method_order_puts_unknown_after_registry_and_real_last():
    order, unknown = method_order(["real", "zzz", "unmask", "telea", "masked"])
    assert order == ["telea", "unmask", "zzz", "masked", "real"]
    assert unknown == ["zzz"]
    assert list(METHODS)[0] == "telea"


def test_only_practice_and_catch_is_flagged():
    df = hand_frame()
    df["is_practice"] = 1
    data = validate(df.astype(str), "x.csv")
    assert data.main.empty and any("nothing to tabulate" in m for m in data.messages)


def test_true_false_flags_and_text_numbers_are_accepted():
    df = hand_frame().astype(str)
    df["is_practice"] = df["is_practice"].map({"0": "false", "1": "TRUE"})
    data = validate(df, "x.csv")
    assert int(data.trials["is_practice"].sum()) == 1 and not data.messages
