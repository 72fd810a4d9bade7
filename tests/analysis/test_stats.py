"""analysis.stats on a fixture worked out by hand, cross-checked against direct scipy/statsmodels calls."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from analysis import stats as S
from analysis.load import validate
from tests.analysis.fixtures import hand_frame, twenty_frame

METHODS3 = ["telea", "landmark", "real"]


@pytest.fixture()
def data():
    return validate(hand_frame(), "hand.csv")


@pytest.fixture()
def main(data):
    m, _ = S.apply_exclusions(data.trials)
    return m


def test_practice_and_catch_never_count(data, main):
    assert len(main) == 12
    assert 999_999 not in main["rt_ms"].tolist()


def test_table3_by_hand(main):
    t3, msgs = S.table3(main, METHODS3)
    t = t3.set_index("method")
    assert list(t3.columns) == S.TABLE3_COLUMNS
    # HQS over all ratings. telea: [2, 1, 3, 2] -> mean 2, squares 0+1+1+0 = 2, SD = sqrt(2/3).
    assert t.loc["telea", "hqs_mean"] == pytest.approx(2.0)
    assert t.loc["telea", "hqs_sd"] == pytest.approx(math.sqrt(2 / 3))
    # landmark [5, 4, 4, 5]: 4.5, SD sqrt(1/3); real [7, 6, 6, 7]: 6.5, SD sqrt(1/3).
    assert t.loc["landmark", ["hqs_mean", "hqs_sd"]].tolist() == pytest.approx(
        [4.5, math.sqrt(1 / 3)]
    )
    assert t.loc["real", ["hqs_mean", "hqs_sd"]].tolist() == pytest.approx([6.5, math.sqrt(1 / 3)])
    # Accuracy per participant: telea P1 1/2 = 50 %, P2 2/2 = 100 % -> 75 ± |100-50|/sqrt(2).
    assert t.loc["telea", ["accuracy_mean", "accuracy_sd"]].tolist() == pytest.approx(
        [75, 50 / math.sqrt(2)]
    )
    assert t.loc["landmark", ["accuracy_mean", "accuracy_sd"]].tolist() == pytest.approx(
        [75, 50 / math.sqrt(2)]
    )
    assert t.loc["real", ["accuracy_mean", "accuracy_sd"]].tolist() == pytest.approx([100, 0])
    # Duration = total seconds: telea P1 4+6 = 10, P2 5+5 = 10; landmark 3+5 = 8, 4+6 = 10; real 4, 4.
    assert t.loc["telea", ["duration_mean", "duration_sd"]].tolist() == pytest.approx([10, 0])
    assert t.loc["landmark", ["duration_mean", "duration_sd"]].tolist() == pytest.approx(
        [9, math.sqrt(2)]
    )
    assert t.loc["real", ["duration_mean", "duration_sd"]].tolist() == pytest.approx([4, 0])
    assert t["n_participants"].tolist() == [2, 2, 2] and t["n_ratings"].tolist() == [4, 4, 4]
    assert msgs == []


def test_table4_by_hand_and_against_scipy(main):
    t4, _ = S.table4(main, METHODS3)
    assert list(t4.columns) == S.TABLE4_COLUMNS
    row = t4.set_index(["method_a", "method_b"]).loc[("telea", "landmark")]
    # ranksums telea [2,1,3,2] vs landmark [5,4,4,5]: telea ranks 1, 2.5, 2.5, 4 -> W = 10,
    # E = 4*9/2 = 18, Var = 4*4*9/12 = 12, z = -8/sqrt(12), p = 2 Phi(z) = 0.0209 (no tie correction).
    z = -8 / math.sqrt(12)
    assert row["p_hqs"] == pytest.approx(2 * ss.norm.cdf(z))
    assert row["p_hqs"] == pytest.approx(0.02092, abs=1e-5)
    assert row["p_hqs"] == pytest.approx(ss.ranksums([2, 1, 3, 2], [5, 4, 4, 5]).pvalue)
    # Tukey HSD on per-participant accuracies and total durations, all three methods at once.
    acc = ss.tukey_hsd([50, 100], [100, 50], [100, 100]).pvalue
    dur = ss.tukey_hsd([10, 10], [8, 10], [4, 4]).pvalue
    got = t4.set_index(["method_a", "method_b"])
    for (i, a), (j, b) in [
        ((0, "telea"), (1, "landmark")),
        ((0, "telea"), (2, "real")),
        ((1, "landmark"), (2, "real")),
    ]:
        assert got.loc[(a, b), "p_accuracy"] == pytest.approx(acc[i, j])
        assert got.loc[(a, b), "p_duration"] == pytest.approx(dur[i, j])
    # Same p as scikit-posthocs' Tukey (SETUP-FACTS: they agree).
    assert got.loc[("telea", "landmark"), "p_accuracy"] == pytest.approx(1.0)


def test_table5_by_hand(main):
    long, wide = S.table5(main, METHODS3)
    assert list(long.columns) == S.TABLE5_COLUMNS
    cell = long.set_index(["expression", "method"])["accuracy"]
    # happy x telea: both right; sad x telea: P1 said neutral -> 50; happy x landmark: P2 wrong -> 50.
    assert cell[("happy", "telea")] == 100 and cell[("sad", "telea")] == 50
    assert cell[("happy", "landmark")] == 50 and cell[("sad", "landmark")] == 100
    assert cell[("happy", "real")] == 100 and cell[("sad", "real")] == 100
    # Row averages pool the 6 trials: happy 5/6, sad 5/6; column averages = Table 3's accuracy.
    assert wide.loc["happy", "average"] == pytest.approx(500 / 6)
    assert wide.loc["average", ["telea", "landmark", "real"]].tolist() == pytest.approx(
        [75, 75, 100]
    )


def test_friedman_and_kendall_w_by_hand(main):
    res = S.friedman_quality(main, METHODS3)
    # Per-participant means: P1 (1.5, 4.5, 6.5), P2 (2.5, 4.5, 6.5): ranks (1, 2, 3) twice.
    # chi2 = 12/(n k (k+1)) sum R^2 - 3 n (k+1) = 12/24 * (4 + 16 + 36) - 24 = 4; W = 4 / (2*2) = 1.
    assert res.statistic == pytest.approx(4.0) and res.df == 2
    assert res.p == pytest.approx(math.exp(-2))  # chi2(2) survival at 4
    assert res.p == pytest.approx(ss.friedmanchisquare([1.5, 2.5], [4.5, 4.5], [6.5, 6.5]).pvalue)
    assert res.effect["kendall_w"] == pytest.approx(1.0)
    assert set(res.pairs.columns) >= {"p_conover_holm", "p_nemenyi", "p_wilcoxon_holm"}
    assert len(res.pairs) == 3
    # Signed-rank on the per-participant means: telea (1.5, 2.5) vs landmark (4.5, 4.5).
    pairs = res.pairs.set_index(["method_a", "method_b"])
    assert pairs.loc[("telea", "landmark"), "p_wilcoxon"] == pytest.approx(
        ss.wilcoxon([1.5, 2.5], [4.5, 4.5]).pvalue
    )


def test_cochran_and_mcnemar_by_hand(main):
    from statsmodels.stats.contingency_tables import cochrans_q, mcnemar

    blocks = S.matched_blocks(main, METHODS3)
    # Blocks (participant, expression, k) x (telea, landmark, real):
    # P1 happy 1 1 1; P1 sad 0 1 1; P2 happy 1 0 1; P2 sad 1 1 1.
    assert blocks.to_numpy().tolist() == [[1, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]]
    res = S.cochran_mcnemar_accuracy(main, METHODS3)
    # Q = (k-1)(k sum C^2 - N^2) / (k N - sum R^2) = 2 (3*34 - 100) / (30 - 26) = 1; p = e^-0.5.
    assert res.statistic == pytest.approx(1.0) and res.df == 2
    assert res.p == pytest.approx(math.exp(-0.5))
    assert res.p == pytest.approx(cochrans_q(blocks.to_numpy()).pvalue)
    pair = res.pairs.set_index(["method_a", "method_b"]).loc[("telea", "landmark")]
    assert (pair["a_only_correct"], pair["b_only_correct"]) == (1, 1)
    assert pair["p_mcnemar"] == pytest.approx(mcnemar([[2, 1], [1, 0]], exact=True).pvalue)
    assert pair["odds_ratio"] == pytest.approx(1.0)


def test_mcnemar_p_and_odds_ratio_ci_match_statsmodels():
    # 12 blocks where a is right and b wrong 7 times, the reverse once.
    rows = []
    outcomes = [(1, 0)] * 7 + [(0, 1)] + [(1, 1)] * 4
    for k, (a, b) in enumerate(outcomes):
        for m, c in (("telea", a), ("real", b)):
            rows.append(
                {
                    "participant_id": f"p{k}",
                    "trial_index": 0 if m == "telea" else 1,
                    "expression_true": "sad",
                    "method": m,
                    "correct": c,
                }
            )
    res = S.cochran_mcnemar_accuracy(pd.DataFrame(rows), ["telea", "real"])
    from statsmodels.stats.contingency_tables import mcnemar

    pair = res.pairs.iloc[0]
    assert pair["p_mcnemar"] == pytest.approx(mcnemar([[4, 7], [1, 0]], exact=True).pvalue)
    assert pair["odds_ratio"] == pytest.approx(7.0)
    ci = ss.binomtest(7, 8).proportion_ci(method="exact")
    assert pair["or_ci_low"] == pytest.approx(ci.low / (1 - ci.low))
    assert pair["or_ci_high"] == pytest.approx(ci.high / (1 - ci.high))
    # No block where only b is right: the odds ratio and its upper bound are unbounded.
    only_a = pd.DataFrame(rows[:14])
    pair = S.cochran_mcnemar_accuracy(only_a, ["telea", "real"]).pairs.iloc[0]
    assert math.isinf(pair["odds_ratio"]) and math.isinf(pair["or_ci_high"])
    assert pair["p_mcnemar"] == pytest.approx(2 * 0.5**7)


def test_rank_biserial_matches_mann_whitney_u():
    a, b = np.array([1, 2, 2, 5, 7]), np.array([2, 3, 3, 6])
    u = ss.mannwhitneyu(a, b).statistic  # U of a, ties counted half
    r = S._rank_biserial_from_hist(S._hist(pd.Series(a)), S._hist(pd.Series(b)))
    assert r == pytest.approx(2 * u / (len(a) * len(b)) - 1)
    # Hand: a=[1,2], b=[2,3]: pairs <, <, =, < -> (0 - 3)/4 = -0.75.
    assert (
        S._rank_biserial_from_hist(S._hist(pd.Series([1, 2])), S._hist(pd.Series([2, 3]))) == -0.75
    )


def test_quality_effect_sizes_on_hand_fixture(main):
    eff = S.quality_effect_sizes(main, METHODS3, n_boot=200).set_index(["method_a", "method_b"])
    # Every telea rating is below every landmark rating: r = -1, and no bootstrap can change that.
    assert eff.loc[("telea", "landmark"), ["rank_biserial", "ci_low", "ci_high"]].tolist() == [
        -1,
        -1,
        -1,
    ]
    assert eff.loc[("telea", "landmark"), "p_mannwhitney"] == pytest.approx(
        ss.mannwhitneyu([2, 1, 3, 2], [5, 4, 4, 5]).pvalue
    )


def test_duration_models_match_direct_statsmodels(main):
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import AnovaRM

    rm, mm = S.duration_models(main, METHODS3)
    d = main.assign(log_s=np.log(main["rt_ms"].astype(float) / 1000))
    per = d.groupby(["participant_id", "method"], as_index=False)["log_s"].mean()
    tab = AnovaRM(per, "log_s", "participant_id", within=["method"]).fit().anova_table
    assert rm.statistic == pytest.approx(tab["F Value"].iloc[0])
    assert rm.p == pytest.approx(tab["Pr > F"].iloc[0])
    d = d.assign(method=pd.Categorical(d["method"], ["real", "telea", "landmark"]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = smf.mixedlm("log_s ~ C(method)", d, groups=d["participant_id"]).fit(reml=False)
        null = smf.mixedlm("log_s ~ 1", d, groups=d["participant_id"]).fit(reml=False)
    assert mm.statistic == pytest.approx(max(2 * (full.llf - null.llf), 0), rel=1e-4, abs=1e-6)
    ratio = mm.pairs.set_index("method").loc["telea", "time_ratio"]
    assert ratio == pytest.approx(np.exp(full.params["C(method)[T.telea]"]), rel=1e-4)


def test_fleiss_kappa_by_hand_and_against_statsmodels(main):
    from statsmodels.stats.inter_rater import fleiss_kappa

    rel, _ = S.reliability(main, METHODS3)
    # 6 stimuli x 2 raters; agreement on 4 -> P = 4/6. Choices: happy 5, neutral 2, sad 5 of 12:
    # Pe = (25 + 4 + 25)/144 = 0.375; kappa = (2/3 - 0.375)/(1 - 0.375) = 0.4667.
    k = rel.set_index("method").loc["all", "fleiss_kappa_expression"]
    assert k == pytest.approx((2 / 3 - 0.375) / 0.625)
    table = np.array([[2, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 2], [2, 0, 0], [0, 0, 2]])
    assert k == pytest.approx(fleiss_kappa(table))
    assert S.fleiss_kappa_counts(table) == pytest.approx(fleiss_kappa(table))


def _value_counts(coders: list[list[float]], domain: list[int]) -> np.ndarray:
    units = np.array(coders, dtype=float).T
    return np.array([[np.sum(u == v) for v in domain] for u in units])


def test_krippendorff_alpha_on_published_examples():
    nan = np.nan
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units.
    k2011 = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    vc = _value_counts(k2011, [1, 2, 3, 4, 5])
    assert S.krippendorff_alpha(vc, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert S.krippendorff_alpha(vc, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert S.krippendorff_alpha(vc, "interval") == pytest.approx(0.849, abs=5e-4)
    # Wikipedia's computational example (3 coders, 15 units): nominal 0.691, interval 0.811.
    wiki = [
        [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
        [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
        [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
    ]
    vc = _value_counts(wiki, [1, 2, 3, 4])
    assert S.krippendorff_alpha(vc, "nominal") == pytest.approx(0.691358, abs=1e-6)
    assert S.krippendorff_alpha(vc, "interval") == pytest.approx(0.810845, abs=1e-6)
    # Perfect agreement is 1; a single value used anywhere leaves alpha undefined.
    assert S.krippendorff_alpha(np.array([[2, 0], [0, 2]]), "ordinal") == 1.0
    assert math.isnan(S.krippendorff_alpha(np.array([[2, 0], [3, 0]]), "ordinal"))


def test_exclusions_count_and_drop(data):
    main, rep = S.apply_exclusions(
        data.trials, S.Exclusions(catch_min_accuracy=1.0, rt_min_ms=1500, rt_max_ms=5500)
    )
    t = rep.table().set_index("rule")
    # P1 failed their catch trial -> 6 trials go; then P2's 1000 ms and 6000 ms trials.
    assert t.loc["catch-trial accuracy < 100%"].tolist() == [1, 6]
    assert t.loc["rt_ms < 1500", "trials_excluded"] == 1
    assert t.loc["rt_ms > 5500", "trials_excluded"] == 1
    assert t.loc["practice and catch trials (always)", "trials_excluded"] == 3
    assert set(main["participant_id"]) == {"P2"} and len(main) == 4


def _unfinished_p2(completed_column: bool) -> pd.DataFrame:
    """The hand fixture with P2 quitting after 3 of the 6 main trials."""
    frame = hand_frame()
    p2_main = frame[(frame["participant_id"] == "P2") & (frame["is_catch"] == 0)]
    frame = frame.drop(p2_main.index[3:])
    if completed_column:
        frame["completed"] = (frame["participant_id"] == "P1").astype(int)
    return validate(frame, "quit.csv").trials


@pytest.mark.parametrize("completed_column", [True, False])
def test_unfinished_sessions_are_named_and_can_be_left_out(completed_column):
    trials = _unfinished_p2(completed_column)
    assert S.unfinished(trials) == {"P2": (3, 6)}
    main, _ = S.apply_exclusions(trials)
    msgs = " | ".join(S.table3(main, METHODS3)[1])
    said = "did not finish their session" if completed_column else "answered fewer main trials"
    assert f"1 participant(s) {said}" in msgs and "main trials answered: P2 (3 of 6)" in msgs
    assert "--exclude-incomplete" in msgs
    main, rep = S.apply_exclusions(trials, S.Exclusions(incomplete=True))
    assert set(main["participant_id"]) == {"P1"}
    row = rep.table().set_index("rule").iloc[-1]
    assert row.name.startswith("session not finished") and row.tolist() == [1, 3]
    assert not [m for m in S.table3(main, METHODS3)[1] if "main trials answered" in m]


def test_finished_sessions_with_a_completed_column_are_not_flagged(data):
    frame = hand_frame()
    frame["completed"] = 1
    assert S.unfinished(validate(frame, "done.csv").trials) == {}


def test_a_trial_without_a_response_time_leaves_that_total_out(main):
    """A total over fewer trials would be too short: P1's telea total is missing, not 4 s."""
    main = main.copy()
    main.loc[(main["participant_id"] == "P1") & (main["rt_ms"] == 6000), "rt_ms"] = np.nan
    t3, msgs = S.table3(main, METHODS3)
    t = t3.set_index("method")
    assert t.loc["telea", "duration_mean"] == pytest.approx(10)  # P2's 5 + 5 alone
    assert math.isnan(t.loc["telea", "duration_sd"])
    assert t.loc["landmark", "duration_mean"] == pytest.approx(9)  # unchanged
    assert "participant P1 has trial(s) without a response time (telea)" in " | ".join(msgs)


# ---------------------------------------------------------------------------- edge cases


def _all(main, methods):
    """Run every analysis; return every message (none may raise)."""
    msgs = []
    msgs += S.table3(main, methods)[1] + S.table4(main, methods)[1]
    S.table5(main, methods)
    for res in (
        S.friedman_quality(main, methods),
        S.cochran_mcnemar_accuracy(main, methods),
        *S.duration_models(main, methods),
    ):
        msgs += res.messages
    S.quality_effect_sizes(main, methods, n_boot=50)
    msgs += S.reliability(main, methods)[1]
    return " | ".join(msgs)


def test_method_without_ratings(main):
    main = main.copy()
    main.loc[main["method"] == "landmark", "quality"] = pd.NA
    text = _all(main, METHODS3)
    t3 = S.table3(main, METHODS3)[0].set_index("method")
    assert t3.loc["landmark", "n_ratings"] == 0 and math.isnan(t3.loc["landmark", "hqs_mean"])
    assert "landmark: no quality ratings" in text
    t4 = S.table4(main, METHODS3)[0]
    assert t4.loc[t4["method_b"] == "landmark", "p_hqs"].isna().all()
    assert "no data for landmark" in text  # Friedman drops it


def test_participant_skipped_a_method(main):
    main = main[~((main["participant_id"] == "P2") & (main["method"] == "real"))]
    text = _all(main, METHODS3)
    t3 = S.table3(main, METHODS3)[0].set_index("method")
    assert t3.loc["real", "n_participants"] == 1
    assert "participant P2 has no trial of real" in text
    # real (1 of 2 participants) is too sparse for the repeated-measures tests: it is left out,
    # rather than P2, which would leave a single participant.
    assert "real (data from 1 of 2 participants) left out of the test, not the participants" in text
    fried = S.friedman_quality(main, METHODS3)
    assert fried.n == 2 and any("Friedman needs at least 3 methods" in m for m in fried.messages)
    rm, _ = S.duration_models(main, METHODS3)
    assert rm.n == 2 and np.isfinite(rm.p)


def test_all_ratings_tie(main):
    main = main.assign(quality=4)
    text = _all(main, METHODS3)
    t4 = S.table4(main, METHODS3)[0]
    assert (t4["p_hqs"] == 1.0).all()
    assert "every quality rating is the same" in text
    assert "same mean quality" in text  # Friedman not run


def test_all_values_tie_for_tukey(main):
    main = main.assign(correct=1, rt_ms=2000.0)
    text = _all(main, METHODS3)
    assert "all values tie" in text
    assert S.table4(main, METHODS3)[0]["p_accuracy"].isna().all()


def test_single_method_and_single_participant(main):
    one = main[(main["method"] == "telea") & (main["participant_id"] == "P1")]
    text = _all(one, ["telea"])
    assert "not run" in text
    assert S.table3(one, ["telea"])[0]["n_participants"].tolist() == [1]


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, np.nan])
    got = S.holm(p)
    assert np.isnan(got[3])
    assert got[:3] == pytest.approx(multipletests(p[:3], method="holm")[1])


# ------------------------------------------------------- samples of one (issue 14, item 10)

METHODS4 = ["telea", "landmark", "unmask", "real"]


@pytest.fixture()
def twenty():
    m, _ = S.apply_exclusions(validate(twenty_frame(), "twenty.csv").trials)
    return m


def test_rank_sum_is_not_run_on_a_single_rating(main):
    """1-vs-1 ratings: ranksums gives a p (0.32 for 1 vs 2); no test on a sample of one."""
    one = main[(main["participant_id"] == "P1") & (main["expression_true"] == "happy")]
    assert one.groupby("method").size().tolist() == [1, 1, 1]
    t4, msgs = S.table4(one, METHODS3)
    assert t4["p_hqs"].isna().all()
    assert any(
        "fewer than 2 ratings for telea (n = 1), landmark (n = 1), real (n = 1)" in m for m in msgs
    )
    eff = S.quality_effect_sizes(one, METHODS3, n_boot=50)
    assert eff["p_mannwhitney"].isna().all() and eff["ci_low"].isna().all()
    assert eff["n_a"].tolist() == [1, 1, 1] and eff["rank_biserial"].tolist() == [-1, -1, -1]
    coch = S.cochran_mcnemar_accuracy(one, METHODS3)
    assert coch.pairs["p_mcnemar"].isna().all() and coch.pairs["p_sign_participants"].isna().all()
    assert any("fewer than 2 matched blocks" in m for m in coch.messages)


def test_a_method_with_one_trial_leaves_the_participants_in(twenty):
    """One unmask trial in the whole study dropped 19 of 20 participants from these tests."""
    assert (twenty["method"] == "unmask").sum() == 1
    three = ["telea", "landmark", "real"]
    ref = twenty[twenty["method"] != "unmask"]

    fried = S.friedman_quality(twenty, METHODS4)
    assert fried.n == 20 and list(fried.pairs["method_a"].unique()) == ["telea", "landmark"]
    per = S.participant_quality(ref, three)
    assert fried.statistic == pytest.approx(
        ss.friedmanchisquare(*(per[m] for m in three)).statistic
    )
    note = "unmask (data from 1 of 20 participants) left out of the test, not the participants"
    assert any(note in m for m in fried.messages)
    assert not any("without every method" in m for m in fried.messages)

    coch = S.cochran_mcnemar_accuracy(twenty, METHODS4)
    from statsmodels.stats.contingency_tables import cochrans_q

    blocks = S.matched_blocks(ref, three)
    assert coch.n == 40 == len(blocks.dropna())
    assert coch.p == pytest.approx(cochrans_q(blocks.to_numpy()).pvalue)
    assert any("unmask (data from 1 of 20" in m for m in coch.messages)

    rm, mm = S.duration_models(twenty, METHODS4)
    assert rm.n == 20 and np.isfinite(rm.p)
    assert mm.n == 120 and mm.df == 2 and "unmask" not in set(mm.pairs["method"])
    assert any("mixed model: unmask (data from 1 of 20" in m for m in mm.messages)

    # The paper's tables keep the method, with its single value and no test.
    t3 = S.table3(twenty, METHODS4)[0].set_index("method")
    assert t3.loc["unmask", "n_ratings"] == 1 and math.isnan(t3.loc["unmask", "hqs_sd"])
    t4, msgs = S.table4(twenty, METHODS4)
    with_unmask = (t4["method_a"] == "unmask") | (t4["method_b"] == "unmask")
    assert t4.loc[with_unmask, ["p_hqs", "p_accuracy", "p_duration"]].isna().all().all()
    assert t4.loc[~with_unmask, ["p_hqs", "p_accuracy", "p_duration"]].notna().all().all()


def test_one_participant_missing_a_method_is_dropped_not_the_method(twenty):
    """The other way round: 19 of 20 have every method, so complete cases drop the one."""
    thin = twenty[twenty["method"] != "unmask"]
    thin = thin[~((thin["participant_id"] == "P05") & (thin["method"] == "landmark"))]
    fried = S.friedman_quality(thin, ["telea", "landmark", "real"])
    assert fried.n == 19
    assert any("1 participant(s) without every method left out" in m for m in fried.messages)
    assert not any("left out of the test, not the participants" in m for m in fried.messages)
