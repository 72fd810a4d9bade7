"""The study's statistics: the paper's Tables 3-5 and tests (Yoshihashi et al. 2022), and the
repeated-measures analysis beyond it (Friedman, Cochran's Q / McNemar, RM-ANOVA, effect sizes, reliability).

Every function takes the analysed trials (docs/DESIGN.md long format, practice and catch left out)
and the method order, never crashes on thin data, and says in `messages` what it could not do.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from model.config import EXPRESSIONS, QUALITY, REAL

QUALITY_LEVELS = np.array(QUALITY.levels)  # the study's rating scale, lowest to highest
MIN_GROUP = 2  # no test is run on fewer values than this in a group (or pairs, for paired tests)
# A method enters the repeated-measures (omnibus) tests only with data from at least this share
# of the participants: otherwise complete cases would drop most participants for its sake.
MIN_SHARE_REPEATED = 0.5


# --------------------------------------------------------------------------------------------
# Exclusions (options, all off by default: the paper excluded nobody)


@dataclass(frozen=True)
class Exclusions:
    """Exclusion rules. None = rule off (the default, as in the paper)."""

    catch_min_accuracy: float | None = (
        None  # drop participants below this share of correct catch trials
    )
    rt_min_ms: float | None = None  # drop trials answered faster than this (anticipations)
    rt_max_ms: float | None = None  # drop trials slower than this (lapses)
    screened_out: bool = False  # drop participants an online session screened out
    min_viewport: tuple[int, int] | None = None  # drop participants with a smaller (W, H)
    incomplete: bool = False  # drop participants who did not finish their session

    @property
    def any(self) -> bool:
        return (
            self.screened_out
            or self.incomplete
            or any(
                v is not None
                for v in (
                    self.catch_min_accuracy,
                    self.rt_min_ms,
                    self.rt_max_ms,
                    self.min_viewport,
                )
            )
        )


@dataclass
class ExclusionReport:
    rows: list[dict] = field(default_factory=list)  # rule, participants, trials
    messages: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["rule", "participants_excluded", "trials_excluded"])


def _screened_out(trials: pd.DataFrame, rep: ExclusionReport) -> tuple[str, list[str]]:
    """Participants an online session screened out (the export's `screened_out` column)."""
    rule = "screened out online (failed attention checks, ...)"
    if "screened_out" not in trials:
        rep.messages.append("screen-out rule asked for, but the data has no screened_out column")
        return rule, []
    flagged = trials["screened_out"].fillna("").astype(str).str.strip() != ""
    return rule, sorted(set(trials.loc[flagged, "participant_id"]))


def _small_viewport(
    trials: pd.DataFrame, rules: Exclusions, rep: ExclusionReport
) -> tuple[str, list[str]]:
    """Participants whose browser viewport was below the minimum (unknown sizes are kept)."""
    w, h = rules.min_viewport
    rule = f"viewport smaller than {w}x{h}"
    if "viewport_width" not in trials or "viewport_height" not in trials:
        rep.messages.append("viewport rule asked for, but the data has no viewport columns")
        return rule, []
    small = (trials["viewport_width"] < w) | (trials["viewport_height"] < h)
    return rule, sorted(set(trials.loc[small.fillna(False), "participant_id"]))


def unfinished(trials: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Participants who did not finish their session -> (main trials answered, main trials of
    the most complete participant). From the export's `completed` column when it has one, else
    every participant with fewer main trials than the most any participant answered."""
    main = trials[(trials["is_practice"] == 0) & (trials["is_catch"] == 0)]
    counts = main.groupby("participant_id").size()
    if counts.empty:
        return {}
    most = int(counts.max())
    if "completed" in trials:
        done = trials.groupby("participant_id")["completed"].max().fillna(0)
        left = [p for p in counts.index if done.get(p, 0) != 1]
    else:
        left = list(counts.index[counts < most])
    return {p: (int(counts[p]), most) for p in sorted(left)}


def _incomplete(trials: pd.DataFrame) -> tuple[str, list[str]]:
    rule = "session not finished" + ("" if "completed" in trials else " (fewer main trials)")
    return rule, list(unfinished(trials))


def _drop_participants(
    trials: pd.DataFrame, main: pd.DataFrame, rep: ExclusionReport, rule: str, who: list[str]
) -> pd.DataFrame:
    dropped = main["participant_id"].isin(who)
    rep.rows.append(
        {"rule": rule, "participants_excluded": len(who), "trials_excluded": int(dropped.sum())}
    )
    if who:
        rep.messages.append(f"excluded participant(s), {rule}: {', '.join(map(str, who[:10]))}")
    return main[~dropped]


def apply_exclusions(
    trials: pd.DataFrame, rules: Exclusions = Exclusions()
) -> tuple[pd.DataFrame, ExclusionReport]:
    """Main trials (no practice, no catch) after the exclusion rules, and counts per rule.

    `trials` holds every trial (practice and catch included: catch trials decide the
    participant rule). Participant rules run first, then trial rules.
    """
    rep = ExclusionReport()
    main = trials[(trials["is_practice"] == 0) & (trials["is_catch"] == 0)]
    n_prac = int((trials["is_practice"] == 1).sum())
    n_catch = int(((trials["is_catch"] == 1) & (trials["is_practice"] == 0)).sum())
    rep.rows.append(
        {
            "rule": "practice and catch trials (always)",
            "participants_excluded": 0,
            "trials_excluded": n_prac + n_catch,
        }
    )
    if rules.catch_min_accuracy is not None:
        catch = trials[(trials["is_catch"] == 1) & (trials["is_practice"] == 0)]
        if catch.empty:
            rep.messages.append("catch-trial rule asked for, but the data has no catch trials")
        acc = catch.groupby("participant_id")["correct"].mean()
        no_catch = sorted(set(main["participant_id"]) - set(acc.index))
        if no_catch and not catch.empty:
            rep.messages.append(
                f"{len(no_catch)} participant(s) without catch trials kept: {', '.join(no_catch[:10])}"
            )
        failed = sorted(acc[acc < rules.catch_min_accuracy].index)
        dropped = main["participant_id"].isin(failed)
        rep.rows.append(
            {
                "rule": f"catch-trial accuracy < {rules.catch_min_accuracy:.0%}",
                "participants_excluded": len(failed),
                "trials_excluded": int(dropped.sum()),
            }
        )
        if failed:
            rep.messages.append(
                f"excluded participant(s) failing catch trials: {', '.join(failed)}"
            )
        main = main[~dropped]
    if rules.screened_out:
        main = _drop_participants(trials, main, rep, *_screened_out(trials, rep))
    if rules.min_viewport is not None:
        main = _drop_participants(trials, main, rep, *_small_viewport(trials, rules, rep))
    if rules.incomplete:
        main = _drop_participants(trials, main, rep, *_incomplete(trials))
    for bound, name, op in (
        (rules.rt_min_ms, "rt_ms <", np.less),
        (rules.rt_max_ms, "rt_ms >", np.greater),
    ):
        if bound is None:
            continue
        bad = op(main["rt_ms"].astype(float), bound).fillna(False)
        rep.rows.append(
            {
                "rule": f"{name} {bound:g}",
                "participants_excluded": 0,
                "trials_excluded": int(bad.sum()),
            }
        )
        main = main[~bad]
    return main.copy(), rep


# --------------------------------------------------------------------------------------------
# Per-participant summaries (participant x method)


def _pivot(main: pd.DataFrame, methods: list[str], values: pd.Series, how: str) -> pd.DataFrame:
    df = main.assign(_v=values)
    if how == "sum":  # a skipped method, or a trial without a value, makes the total missing
        out = df.groupby(["participant_id", "method"])["_v"].agg(lambda v: v.sum(skipna=False))
    else:
        out = df.groupby(["participant_id", "method"])["_v"].mean()
    return out.unstack("method").reindex(columns=methods).astype(float)


def participant_accuracy(main: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """% correct per participant (rows) and method (columns); NaN where a participant saw none."""
    return _pivot(main, methods, main["correct"].astype(float) * 100.0, "mean")


def participant_duration(main: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Total seconds per participant and method (paper: "total time"); missing where one of
    those trials has no response time (a total over fewer trials would be too short)."""
    return _pivot(main, methods, main["rt_ms"].astype(float) / 1000.0, "sum")


def participant_quality(main: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Mean quality rating per participant and method (for the repeated-measures tests)."""
    return _pivot(main, methods, main["quality"].astype(float), "mean")


def _mean_sd(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    mean = float(x.mean()) if len(x) else np.nan
    sd = float(x.std(ddof=1)) if len(x) > 1 else np.nan  # sample SD, ddof=1 (docs/DESIGN.md)
    return mean, sd


# --------------------------------------------------------------------------------------------
# The paper's tables


TABLE3_COLUMNS = [
    "method",
    "n_participants",
    "n_ratings",
    "hqs_mean",
    "hqs_sd",
    "accuracy_mean",
    "accuracy_sd",
    "duration_mean",
    "duration_sd",
]
TABLE4_COLUMNS = ["method_a", "method_b", "p_hqs", "p_accuracy", "p_duration"]
TABLE5_COLUMNS = ["expression", "method", "accuracy"]


def table3(main: pd.DataFrame, methods: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """HQS (over all ratings), accuracy % and duration s (over participants), mean and SD, with n."""
    msgs: list[str] = []
    acc, dur = participant_accuracy(main, methods), participant_duration(main, methods)
    rows = []
    for m in methods:
        q = main.loc[main["method"] == m, "quality"].dropna().astype(float)
        if q.empty:
            msgs.append(f"{m}: no quality ratings, HQS left empty")
        hqs = _mean_sd(q)
        a, d = _mean_sd(acc[m]), _mean_sd(dur[m])
        n_p = int(acc[m].notna().sum())
        if n_p == 1:
            msgs.append(f"{m}: a single participant, no SD")
        rows.append(
            {
                "method": m,
                "n_participants": n_p,
                "n_ratings": int(len(q)),
                "hqs_mean": hqs[0],
                "hqs_sd": hqs[1],
                "accuracy_mean": a[0],
                "accuracy_sd": a[1],
                "duration_mean": d[0],
                "duration_sd": d[1],
            }
        )
    skipped = acc.isna() & acc.notna().any(axis=0)
    for pid, row in skipped.iterrows():
        if row.any():
            msgs.append(
                f"participant {pid} has no trial of {', '.join(row.index[row])}: left out of "
                "those methods' accuracy and duration"
            )
    no_rt = main[main["rt_ms"].isna()].groupby("participant_id")["method"].unique()
    for pid, ms in no_rt.items():
        msgs.append(
            f"participant {pid} has trial(s) without a response time ({', '.join(sorted(ms))}): "
            "left out of those methods' duration"
        )
    left = unfinished(main)
    if left:
        who = ", ".join(f"{p} ({n} of {most})" for p, (n, most) in list(left.items())[:10])
        what = (
            "did not finish their session"
            if "completed" in main
            else "answered fewer main trials than the most any participant did"
        )
        msgs.append(
            f"{len(left)} participant(s) {what}, main trials answered: {who}; their accuracy "
            "and duration count fewer trials (duration is a total, as in the paper, so theirs "
            "is shorter); --exclude-incomplete leaves them out"
        )
    counts = main.groupby(["participant_id", "method"]).size().unstack("method")
    if (counts.nunique(axis=1) > 1).any():
        msgs.append(
            "participants saw different numbers of trials per method: per-participant total "
            "durations are not comparable across methods (see the mixed model on log rt instead)"
        )
    return pd.DataFrame(rows, columns=TABLE3_COLUMNS), msgs


def _tukey(
    groups: dict[str, np.ndarray], what: str, msgs: list[str]
) -> dict[tuple[str, str], float]:
    """p of scipy.stats.tukey_hsd over all usable groups at once; NaN where it cannot be computed."""
    usable = {m: g[np.isfinite(g)] for m, g in groups.items()}
    thin = [m for m, g in usable.items() if len(g) < 2]
    if thin:  # scipy's tukey_hsd needs 2 or more values in every group
        msgs.append(
            f"Tukey HSD on {what}: fewer than 2 participants for {', '.join(thin)}, "
            "its pairs left empty"
        )
    usable = {m: g for m, g in usable.items() if len(g) >= 2}
    out: dict[tuple[str, str], float] = {}
    n = sum(len(g) for g in usable.values())
    if len(usable) < 2 or n - len(usable) < 1:
        return out
    within = sum(((g - g.mean()) ** 2).sum() for g in usable.values())
    if within == 0:
        msgs.append(f"Tukey HSD on {what}: no variance within methods (all values tie), no test")
        return out
    keys = list(usable)
    res = stats.tukey_hsd(*usable.values())
    for i, j in itertools.combinations(range(len(keys)), 2):
        out[(keys[i], keys[j])] = float(res.pvalue[i, j])
    return out


def table4(main: pd.DataFrame, methods: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Per method pair: ranksums p on quality ratings; Tukey HSD p on per-participant accuracy, duration.

    scipy.stats.ranksums (as the paper) uses the normal approximation without a tie correction;
    with 7-point ratings there are many ties, so its p is conservative (the tie-corrected
    Mann-Whitney p is in the effect-size table).
    """
    msgs: list[str] = []
    acc, dur = participant_accuracy(main, methods), participant_duration(main, methods)
    p_acc = _tukey({m: acc[m].to_numpy() for m in methods}, "accuracy", msgs)
    p_dur = _tukey({m: dur[m].to_numpy() for m in methods}, "duration", msgs)
    q = {m: main.loc[main["method"] == m, "quality"].dropna().to_numpy(float) for m in methods}
    thin = [m for m in methods if 0 < len(q[m]) < MIN_GROUP]
    if thin:
        msgs.append(
            f"rank-sum on quality: fewer than {MIN_GROUP} ratings for "
            + ", ".join(f"{m} (n = {len(q[m])})" for m in thin)
            + ", its pairs left empty (no test on a sample of one)"
        )
    rows = []
    for a, b in itertools.combinations(methods, 2):
        if len(q[a]) >= MIN_GROUP and len(q[b]) >= MIN_GROUP:
            p_hqs = float(stats.ranksums(q[a], q[b]).pvalue)
        else:
            p_hqs = np.nan
        rows.append(
            {
                "method_a": a,
                "method_b": b,
                "p_hqs": p_hqs,
                "p_accuracy": p_acc.get((a, b), np.nan),
                "p_duration": p_dur.get((a, b), np.nan),
            }
        )
    allq = np.concatenate([v for v in q.values()]) if q else np.array([])
    if len(allq) and np.all(allq == allq[0]):
        msgs.append(
            "every quality rating is the same: rank-sum p-values are 1 (no difference to find)"
        )
    return pd.DataFrame(rows, columns=TABLE4_COLUMNS), msgs


def table5(main: pd.DataFrame, methods: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long cells: expression, method, accuracy %; wide with an "average" row and column).

    Cells pool every trial over participants. The averages pool every trial of the row or
    column too: they equal the mean of the cells when the design is balanced (as the paper's).
    """
    cells = (
        main.assign(_c=main["correct"].astype(float) * 100)
        .groupby(["expression_true", "method"])["_c"]
        .mean()
    )
    exprs = [e for e in EXPRESSIONS if e in set(main["expression_true"])]
    long = pd.DataFrame(
        [
            {"expression": e, "method": m, "accuracy": float(cells.get((e, m), np.nan))}
            for e in exprs
            for m in methods
        ],
        columns=TABLE5_COLUMNS,
    )
    wide = long.pivot(index="expression", columns="method", values="accuracy").reindex(
        index=exprs, columns=methods
    )
    pct = main["correct"].astype(float) * 100
    wide["average"] = pct.groupby(main["expression_true"]).mean().reindex(exprs)
    wide.loc["average"] = [*pct.groupby(main["method"]).mean().reindex(methods), np.nan]
    return long, wide


# --------------------------------------------------------------------------------------------
# Beyond the paper: repeated measures


@dataclass
class TestResult:
    """One omnibus test (statistic, df, p, n) with its pairwise follow-up table and messages."""

    name: str
    statistic: float = np.nan
    df: float | str = np.nan
    p: float = np.nan
    n: int = 0
    effect: dict[str, float] = field(default_factory=dict)
    pairs: pd.DataFrame | None = None
    messages: list[str] = field(default_factory=list)


def sparse_methods(have: pd.Series, n_participants: int, what: str, msgs: list[str]) -> list[str]:
    """Methods too sparse for a repeated-measures test, each named in a note in `msgs`.

    `have`: method -> how many participants have data for it. A method with data from fewer than
    MIN_SHARE_REPEATED of the participants (or fewer than MIN_GROUP) is left out of the test:
    complete cases would otherwise drop every participant without it (one method with a single
    trial would leave one participant). Methods with no data at all are not listed here.
    """
    need = max(MIN_GROUP, math.ceil(MIN_SHARE_REPEATED * n_participants))
    sparse = [m for m, c in have.items() if 0 < c < need]
    if sparse:
        msgs.append(
            f"{what}: "
            + ", ".join(
                f"{m} (data from {have[m]} of {n_participants} participants)" for m in sparse
            )
            + f" left out of the test, not the participants: a method needs data from at least "
            f"{need} participants (half, and {MIN_GROUP}) to enter"
        )
    return sparse


def _complete(matrix: pd.DataFrame, what: str, msgs: list[str]) -> pd.DataFrame:
    """Complete-case participants x methods: methods nobody has are dropped, then methods too
    sparse to test (`sparse_methods`), then participants with gaps in the rest."""
    empty = [m for m in matrix.columns if matrix[m].isna().all()]
    if empty:
        msgs.append(f"{what}: no data for {', '.join(empty)}, left out of the test")
    matrix = matrix.drop(columns=empty)
    matrix = matrix.drop(columns=sparse_methods(matrix.notna().sum(), len(matrix), what, msgs))
    gaps = matrix.index[matrix.isna().any(axis=1)]
    if len(gaps):
        msgs.append(
            f"{what}: {len(gaps)} participant(s) without every method left out "
            f"(complete cases needed): {', '.join(map(str, gaps[:10]))}"
        )
    return matrix.dropna()


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (NaN kept as NaN)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def friedman_quality(main: pd.DataFrame, methods: list[str]) -> TestResult:
    """Friedman test on per-participant mean quality per method, Kendall's W, and post-hoc tests.

    Blocks are participants (each rates every method), treatments the methods. W = chi2_F / (n (k-1))
    from scipy's tie-corrected statistic. Post hoc, three views of the same pairs: Conover's test
    for Friedman data (Holm), Nemenyi's (family-wise by construction; conservative with many
    methods), and the paired Wilcoxon signed-rank test on the per-participant means (Holm).
    Conover's t uses the residual rank variance, which shrinks as rankings agree: with W near 1
    its p-values become tiny; the signed-rank p is the easiest to explain and is bounded by how
    many participants there are.
    """
    res = TestResult("Friedman (quality, per-participant means)")
    mat = _complete(participant_quality(main, methods), "Friedman", res.messages)
    n, k = mat.shape
    res.n = n
    if k < 3 or n < 2:
        res.messages.append(
            f"Friedman needs at least 3 methods and 2 complete participants (have {k} and {n}): "
            "not run (for 2 methods see the pairwise rank-biserial table)"
        )
        return res
    if (mat.nunique(axis=1) == 1).all():
        res.messages.append(
            "Friedman: every participant gave every method the same mean quality; no test"
        )
        return res
    chi2, p = stats.friedmanchisquare(*[mat[c].to_numpy() for c in mat.columns])
    res.statistic, res.df, res.p = float(chi2), k - 1, float(p)
    res.effect = {"kendall_w": float(chi2 / (n * (k - 1)))}
    import scikit_posthocs as sp

    arr = mat.to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        con = sp.posthoc_conover_friedman(arr, p_adjust="holm").to_numpy()
        nem = sp.posthoc_nemenyi_friedman(arr).to_numpy()
    cols = list(mat.columns)
    rows = []
    for i, j in itertools.combinations(range(k), 2):
        if np.all(arr[:, i] == arr[:, j]):
            p_w = 1.0  # no participant tells the two apart
        else:
            p_w = float(stats.wilcoxon(arr[:, i], arr[:, j]).pvalue)
        rows.append(
            {
                "method_a": cols[i],
                "method_b": cols[j],
                "p_conover_holm": float(con[i, j]),
                "p_nemenyi": float(nem[i, j]),
                "p_wilcoxon": p_w,
            }
        )
    res.pairs = pd.DataFrame(rows)
    res.pairs["p_wilcoxon_holm"] = holm(res.pairs["p_wilcoxon"].to_numpy())
    return res


def _hist(values: pd.Series) -> np.ndarray:
    """Counts of each level of the quality scale, lowest first."""
    counts = np.bincount(values.astype(int), minlength=QUALITY.highest + 1)
    return counts[QUALITY.lowest : QUALITY.highest + 1].astype(float)


def _rank_biserial_from_hist(ha: np.ndarray, hb: np.ndarray) -> np.ndarray:
    """P(A > B) - P(A < B) from rating histograms (..., levels): the rank-biserial r of Mann-Whitney U."""
    na, nb = ha.sum(-1), hb.sum(-1)
    cum_b = np.cumsum(hb, -1) - hb  # ratings of B strictly below each level
    greater = (ha * cum_b).sum(-1)
    less = (ha * (nb[..., None] - cum_b - hb)).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (greater - less) / (na * nb)


def quality_effect_sizes(
    main: pd.DataFrame, methods: list[str], n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Rank-biserial r per method pair on the quality ratings, 95% participant-bootstrap CI.

    r = P(a > b) - P(a < b) over all rating pairs (= 2U/(n_a n_b) - 1, Mann-Whitney U of a):
    +1 means every rating of a beats every rating of b. Ratings of one participant are not
    independent, so the CI resamples participants (with all their ratings), not ratings.
    p_mannwhitney: the tie-corrected rank-sum p, for comparison with Table 4's ranksums.
    n_a, n_b: the ratings compared; with fewer than MIN_GROUP on a side, r is given but its CI
    and p are left empty.
    """
    q = main.dropna(subset=["quality"])
    pids = sorted(q["participant_id"].unique())
    # (participants, methods, levels) rating counts; bootstrap = multinomial participant weights.
    h = np.zeros((len(pids), len(methods), len(QUALITY_LEVELS)))
    pi = {p: i for i, p in enumerate(pids)}
    mi = {m: i for i, m in enumerate(methods)}
    for (p, m), s in q.groupby(["participant_id", "method"])["quality"]:
        if m in mi:
            h[pi[p], mi[m]] = _hist(s)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(pids), np.full(len(pids), 1 / len(pids)), size=n_boot) if pids else None
    boot = np.einsum("bp,pmv->bmv", w, h) if pids else None  # (B, methods, levels)
    rows = []
    for a, b in itertools.combinations(methods, 2):
        ia, ib = mi[a], mi[b]
        ha, hb = h[:, ia].sum(axis=0), h[:, ib].sum(axis=0)
        r = float(_rank_biserial_from_hist(ha, hb)) if ha.sum() and hb.sum() else np.nan
        lo = hi = p_mw = np.nan
        if np.isfinite(r) and min(ha.sum(), hb.sum()) >= MIN_GROUP:  # no test on a sample of one
            rb = _rank_biserial_from_hist(boot[:, ia], boot[:, ib])
            rb = rb[np.isfinite(rb)]
            if len(rb):
                lo, hi = (float(x) for x in np.percentile(rb, [2.5, 97.5]))
            xa = np.repeat(QUALITY_LEVELS, ha.astype(int))
            xb = np.repeat(QUALITY_LEVELS, hb.astype(int))
            if np.unique(np.concatenate([xa, xb])).size > 1:
                p_mw = float(stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
            else:
                p_mw = 1.0
        rows.append(
            {
                "method_a": a,
                "method_b": b,
                "n_a": int(ha.sum()),
                "n_b": int(hb.sum()),
                "rank_biserial": r,
                "ci_low": lo,
                "ci_high": hi,
                "p_mannwhitney": p_mw,
            }
        )
    return pd.DataFrame(rows)


def matched_blocks(main: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Binary outcomes (correct) in matched blocks x methods, for Cochran's Q and McNemar.

    McNemar and Cochran's Q need the methods' outcomes paired. A block is (participant, true
    expression, k): the k-th trial (in presentation order) of that participant with that true
    expression, for every method. Pairing within participant and expression holds constant the
    two things that drive accuracy most (the rater; the paper's Table 5 shows the expression);
    which of two same-expression faces pairs with which is the only arbitrary choice, made
    deterministically by order. Blocks missing a method are NaN there.
    """
    df = main.sort_values(["participant_id", "trial_index"])
    k = df.groupby(["participant_id", "expression_true", "method"]).cumcount()
    out = (
        df.assign(_k=k)
        .pivot_table(
            index=["participant_id", "expression_true", "_k"],
            columns="method",
            values="correct",
            aggfunc="first",
        )
        .reindex(columns=methods)
    )
    return out.astype(float)


def cochran_mcnemar_accuracy(main: pd.DataFrame, methods: list[str]) -> TestResult:
    """Cochran's Q over matched blocks, then pairwise exact McNemar (Holm) with conditional odds ratios.

    McNemar's exact test is the binomial test on the discordant blocks (b: a right & b wrong,
    c: the reverse); the matched-pairs odds ratio b/c gets the exact (Clopper-Pearson) CI of
    b/(b+c) mapped through p/(1-p). Blocks of one participant are treated as independent, as
    the paper treats ratings; `p_sign_participants` is the clustering-proof check: an exact sign
    test over participants whose per-participant accuracy differs between the two methods.
    """
    from statsmodels.stats.contingency_tables import cochrans_q

    res = TestResult("Cochran's Q (accuracy, matched blocks)")
    blocks = matched_blocks(main, methods)
    present = [m for m in methods if blocks[m].notna().any()]
    have = blocks[present].notna().groupby(level="participant_id").any().sum()
    n_people = blocks.index.get_level_values("participant_id").nunique()
    sparse = sparse_methods(have, n_people, "Cochran's Q", res.messages)
    present = [m for m in present if m not in sparse]
    full = blocks[present].dropna()
    res.n = len(full)
    if len(blocks) > len(full):
        res.messages.append(
            f"Cochran's Q: {len(blocks) - len(full)} of {len(blocks)} blocks lack a method, left out"
        )
    if len(present) < 2 or full.empty:
        res.messages.append("Cochran's Q: fewer than 2 methods with matched trials; not run")
    elif (full.nunique(axis=1) == 1).all():
        res.messages.append(
            "Cochran's Q: no block has discordant outcomes (every method right, or every method "
            "wrong, within each block); no test"
        )
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = cochrans_q(full.to_numpy())
        res.statistic, res.df, res.p = float(q.statistic), int(q.df), float(q.pvalue)
    acc = participant_accuracy(main, methods)
    rows = []
    for a, b in itertools.combinations(methods, 2):
        pair = blocks[[a, b]].dropna()
        nb = int(((pair[a] == 1) & (pair[b] == 0)).sum())
        nc = int(((pair[a] == 0) & (pair[b] == 1)).sum())
        p = orr = lo = hi = np.nan
        if len(pair) >= MIN_GROUP:
            if nb + nc == 0:
                p = 1.0
            else:
                bt = stats.binomtest(nb, nb + nc, 0.5)
                p = float(bt.pvalue)  # = statsmodels mcnemar(exact=True)
                ci = bt.proportion_ci(confidence_level=0.95, method="exact")
                orr = nb / nc if nc else np.inf
                lo = ci.low / (1 - ci.low) if ci.low < 1 else np.inf
                hi = ci.high / (1 - ci.high) if ci.high < 1 else np.inf
        d = (acc[a] - acc[b]).dropna()
        npos, nneg = int((d > 0).sum()), int((d < 0).sum())
        p_sign = np.nan
        if npos + nneg and len(d) >= MIN_GROUP:
            p_sign = float(stats.binomtest(npos, npos + nneg, 0.5).pvalue)
        rows.append(
            {
                "method_a": a,
                "method_b": b,
                "n_blocks": len(pair),
                "a_only_correct": nb,
                "b_only_correct": nc,
                "p_mcnemar": p,
                "odds_ratio": orr,
                "or_ci_low": lo,
                "or_ci_high": hi,
                "p_sign_participants": p_sign,
            }
        )
    pairs = pd.DataFrame(rows)
    few = [f"{r['method_a']}-{r['method_b']}" for r in rows if 0 < r["n_blocks"] < MIN_GROUP]
    if few:
        res.messages.append(
            f"McNemar: fewer than {MIN_GROUP} matched blocks for {', '.join(few)}: not run"
        )
    if not pairs.empty:
        pairs.insert(
            pairs.columns.get_loc("p_mcnemar") + 1,
            "p_mcnemar_holm",
            holm(pairs["p_mcnemar"].to_numpy()),
        )
    res.pairs = pairs
    return res


def duration_models(main: pd.DataFrame, methods: list[str]) -> tuple[TestResult, TestResult]:
    """(repeated-measures ANOVA, linear mixed model) on log response time per trial.

    AnovaRM: per-participant mean log seconds per method (complete cases; the log makes the
    right-skewed times near-normal, and a mean of logs is a log geometric mean). Mixed model:
    every trial, log s ~ method + random intercept per participant, fitted by ML; the method
    effect is a likelihood-ratio test against the intercept-only model, and each method's
    exp(coefficient) is its ratio of typical response time to the reference (`real` when present).
    """
    d = main.dropna(subset=["rt_ms"]).copy()
    d = d[d["rt_ms"] > 0]
    d["log_s"] = np.log(d["rt_ms"].astype(float) / 1000.0)
    present = [m for m in methods if (d["method"] == m).any()]

    rm = TestResult("Repeated-measures ANOVA (per-participant mean log s)")
    per = _pivot(d, present, d["log_s"], "mean")
    mat = _complete(per, "RM-ANOVA", rm.messages)
    rm.n = len(mat)
    if mat.shape[1] < 2 or len(mat) < 2:
        rm.messages.append("RM-ANOVA needs 2 methods and 2 complete participants; not run")
    else:
        from statsmodels.stats.anova import AnovaRM

        long = mat.reset_index().melt(
            id_vars="participant_id", var_name="method", value_name="log_s"
        )
        try:
            tab = (
                AnovaRM(long, depvar="log_s", subject="participant_id", within=["method"])
                .fit()
                .anova_table
            )
            rm.statistic = float(tab["F Value"].iloc[0])
            rm.df = f"{tab['Num DF'].iloc[0]:g}, {tab['Den DF'].iloc[0]:g}"
            rm.p = float(tab["Pr > F"].iloc[0])
            if not np.isfinite(rm.statistic):
                rm.messages.append("RM-ANOVA: no residual variance (all values tie)")
        except (ValueError, np.linalg.LinAlgError) as exc:
            rm.messages.append(f"RM-ANOVA failed: {exc}")

    mm = TestResult("Linear mixed model (log s per trial, random intercept per participant)")
    sparse = sparse_methods(per.notna().sum(), len(per), "mixed model", mm.messages)
    present = [m for m in present if m not in sparse]
    d = d[d["method"].isin(present)]
    mm.n = len(d)
    if len(present) < 2 or d["participant_id"].nunique() < 2:
        mm.messages.append("mixed model needs 2 methods and 2 participants; not run")
        return rm, mm
    if d["log_s"].nunique() < 2:
        mm.messages.append("mixed model: all response times tie; not run")
        return rm, mm
    import statsmodels.formula.api as smf

    ref = REAL if REAL in present else present[0]
    d["method"] = pd.Categorical(d["method"], categories=[ref] + [m for m in present if m != ref])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            full = smf.mixedlm("log_s ~ C(method)", d, groups=d["participant_id"]).fit(reml=False)
            null = smf.mixedlm("log_s ~ 1", d, groups=d["participant_id"]).fit(reml=False)
        except (ValueError, np.linalg.LinAlgError) as exc:
            mm.messages.append(f"mixed model failed: {exc}")
            return rm, mm
    conv = {str(w.message).split("\n")[0] for w in caught if "onverg" in str(w.message)}
    if conv:
        mm.messages.append("mixed model: " + "; ".join(sorted(conv)))
    lr = max(2 * (full.llf - null.llf), 0.0)
    mm.statistic, mm.df = float(lr), len(present) - 1
    mm.p = float(stats.chi2.sf(lr, mm.df))
    ci = full.conf_int()
    rows = [{"method": ref, "time_ratio": 1.0, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan}]
    for m in present:
        if m == ref:
            continue
        name = f"C(method)[T.{m}]"
        rows.append(
            {
                "method": m,
                "time_ratio": float(np.exp(full.params[name])),
                "ci_low": float(np.exp(ci.loc[name, 0])),
                "ci_high": float(np.exp(ci.loc[name, 1])),
                "p": float(full.pvalues[name]),
            }
        )
    mm.pairs = pd.DataFrame(rows)
    mm.effect = {"reference": ref}  # type: ignore[dict-item]
    return rm, mm


# --------------------------------------------------------------------------------------------
# Inter-rater reliability


def fleiss_kappa_counts(counts: np.ndarray) -> float:
    """Fleiss' kappa from a subjects x categories count table, raters per subject may vary.

    P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)) over subjects with n_i >= 2; P_e = sum_j p_j^2
    with p_j the pooled category shares. With equal n_i this is Fleiss (1971) exactly.
    """
    counts = np.asarray(counts, dtype=float)
    n_i = counts.sum(axis=1)
    counts, n_i = counts[n_i >= 2], n_i[n_i >= 2]
    if len(counts) == 0:
        return np.nan
    p_i = ((counts**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_j = counts.sum(axis=0) / counts.sum()
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return np.nan  # one category only: chance agreement is 1, kappa undefined
    return float((p_i.mean() - p_e) / (1 - p_e))


def krippendorff_alpha(value_counts: np.ndarray, level: str = "ordinal") -> float:
    """Krippendorff's alpha from a units x values count table (values sorted, e.g. 1..7).

    Coincidences o_ck = sum_u (n_uc n_uk - [c=k] n_uc) / (m_u - 1) over units with m_u >= 2
    values; D_o = sum o_ck d_ck / n, D_e = sum n_c n_k d_ck / (n (n - 1)), alpha = 1 - D_o / D_e.
    Ordinal d_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 (Krippendorff 2011); interval d = (c-k)^2
    on the value positions given by `values` 1..V; nominal d = [c != k].
    """
    vc = np.asarray(value_counts, dtype=float)
    m_u = vc.sum(axis=1)
    vc, m_u = vc[m_u >= 2], m_u[m_u >= 2]
    if len(vc) == 0:
        return np.nan
    o = (vc[:, :, None] * vc[:, None, :]) / (m_u - 1)[:, None, None]
    o = o.sum(axis=0) - np.diag((vc / (m_u - 1)[:, None]).sum(axis=0))
    n_c = o.sum(axis=1)
    n = n_c.sum()
    v = len(n_c)
    idx = np.arange(v)
    if level == "nominal":
        d = (idx[:, None] != idx[None, :]).astype(float)
    elif level == "interval":
        d = (idx[:, None] - idx[None, :]).astype(float) ** 2
    elif level == "ordinal":
        cum = np.cumsum(n_c)
        lo, hi = np.minimum(idx[:, None], idx[None, :]), np.maximum(idx[:, None], idx[None, :])
        between = cum[hi] - np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        d = (between - (n_c[lo] + n_c[hi]) / 2) ** 2
    else:
        raise ValueError(f"level must be nominal, ordinal or interval, not {level!r}")
    d_o = (o * d).sum() / n
    d_e = (np.outer(n_c, n_c) * d).sum() / (n * (n - 1))
    if d_e == 0:
        return np.nan  # a single value used: no variation to agree on
    return float(1 - d_o / d_e)


def reliability(main: pd.DataFrame, methods: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Fleiss' kappa (expression choices) and Krippendorff's ordinal alpha (quality) per method and overall.

    Units are stimuli (one face through one method); raters are the participants who saw it.
    Only stimuli seen by 2 or more raters count.
    """
    msgs: list[str] = []
    rows = []
    for label, part in [("all", main), *[(m, main[main["method"] == m]) for m in methods]]:
        ch = part.dropna(subset=["expression_chosen"])
        kc = pd.crosstab(ch["stimulus_id"], ch["expression_chosen"]).reindex(
            columns=list(EXPRESSIONS), fill_value=0
        )
        qq = part.dropna(subset=["quality"])
        qc = pd.crosstab(qq["stimulus_id"], qq["quality"].astype(int)).reindex(
            columns=QUALITY_LEVELS, fill_value=0
        )
        multi_k = int((kc.sum(axis=1) >= 2).sum())
        multi_q = int((qc.sum(axis=1) >= 2).sum())
        rows.append(
            {
                "method": label,
                "stimuli_multi_rated": multi_q,
                "mean_raters": float(qc.sum(axis=1)[qc.sum(axis=1) >= 2].mean())
                if multi_q
                else np.nan,
                "fleiss_kappa_expression": fleiss_kappa_counts(kc.to_numpy())
                if multi_k
                else np.nan,
                "kalpha_quality_ordinal": krippendorff_alpha(qc.to_numpy(), "ordinal")
                if multi_q
                else np.nan,
            }
        )
    if rows and rows[0]["stimuli_multi_rated"] == 0:
        msgs.append("reliability: no stimulus was rated by 2 or more participants; not estimable")
    return pd.DataFrame(rows), msgs
