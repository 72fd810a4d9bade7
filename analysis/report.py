"""`python analysis/report.py [--db URL | --csv FILE] [--out DIR]`: the study's report.

Tables 3-5 as in Yoshihashi et al. 2022 (csv/md/tex), the repeated-measures analysis beyond the
paper (report.md and csv), and plots (PNG), written to a new run folder runs/report/<UTC time>/
(or --out DIR; the committed report only with an explicit --out results/study) and printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a plain script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import stats  # noqa: E402
from analysis.load import StudyData, StudyDataError, read_csv, read_db  # noqa: E402
from analysis.tables import (  # noqa: E402
    SIMULATED_BANNER,
    fmt_num,
    fmt_p,
    frame_markdown,
    label,
    out_name,
    write_paper_tables,
)
from model.cli import HelpFormatter  # noqa: E402
from model.config import new_run_dir  # noqa: E402
from model.methods.registry import METHODS  # noqa: E402

DESCRIPTION = __doc__.split("\n\n", 1)[1].strip()  # the docstring's paragraph after the usage
EPILOG = """\
outputs: table3/4/5 .csv (docs/DESIGN.md's fixed columns) .md .tex; report.md (everything, with the
repeated-measures analysis and notes); quality_friedman_posthoc, quality_effect_sizes,
accuracy_mcnemar, duration_mixed_model, reliability, exclusions, omnibus_tests (.csv); three PNG
plots. Input that is simulated (file name contains "simulated", or every participant code starts
with "sim-") gives file names ending in _simulated and SIMULATED banners and titles.
Practice and catch trials never count. Methods unknown to the registry are kept (with a note),
after the registry's methods; `real` is always last. Exit status 2: the input cannot be analysed.
"""


def add_arguments(ap: argparse.ArgumentParser) -> None:
    src = ap.add_mutually_exclusive_group()
    src.add_argument(
        "--db",
        metavar="URL",
        help="SQLAlchemy URL of the study database "
        "(default: $DATABASE_URL, else $UNMASK_STUDY_DB, else study_data/study.sqlite)",
    )
    src.add_argument(
        "--csv",
        metavar="FILE",
        help="long-format export (docs/DESIGN.md) instead of the database (default: none)",
    )
    ap.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output folder (default: a new runs/report/<UTC time>/, never over an earlier "
        "report; --out results/study updates the committed one)",
    )
    ex = ap.add_argument_group("exclusions (all off by default, as in the paper)")
    ex.add_argument(
        "--catch-min-accuracy",
        type=float,
        metavar="FRAC",
        help="exclude participants with a lower share of correct catch trials (e.g. 0.75)",
    )
    ex.add_argument(
        "--rt-min-ms", type=float, metavar="MS", help="exclude trials answered faster (e.g. 300)"
    )
    ex.add_argument(
        "--rt-max-ms", type=float, metavar="MS", help="exclude trials slower than this (e.g. 60000)"
    )
    ex.add_argument(
        "--exclude-screened-out",
        action="store_true",
        help="exclude participants an online session screened out (export column screened_out)",
    )
    ex.add_argument(
        "--exclude-incomplete",
        action="store_true",
        help="exclude participants who did not finish their session (export column completed; "
        "without it: fewer main trials than the most any participant answered)",
    )
    ex.add_argument(
        "--min-viewport",
        metavar="WxH",
        help="exclude participants whose browser viewport was smaller (e.g. 600x500)",
    )
    ap.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="participant-bootstrap resamples for effect-size CIs",
    )
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument(
        "--proxy",
        metavar="CSV",
        default=None,
        help="machine rater's table (default: results/metrics/expression_proxy.csv when present): "
        "its agreement with the people is printed",
    )
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    ap.add_argument("--quiet", action="store_true", help="do not print the tables")


def load(args: argparse.Namespace) -> StudyData:
    if args.csv:
        return read_csv(args.csv)
    return read_db(args.db)


def analyse(data: StudyData, rules: stats.Exclusions, n_boot: int = 2000, seed: int = 0) -> dict:
    """Every number of the report, as frames and test results (no files)."""
    main, excl = stats.apply_exclusions(data.trials, rules)
    methods = [m for m in data.methods if (main["method"] == m).any()]
    notes = list(data.messages) + excl.messages
    gone = [m for m in data.methods if m not in methods]
    if gone:
        notes.append(f"no trial left for {', '.join(gone)} after exclusions: not tabulated")
    absent = [k for k in METHODS if k not in data.methods]
    if absent and methods:
        notes.append(f"registry method(s) without trials in this study: {', '.join(absent)}")
    if main.empty:
        raise StudyDataError("no trial left to analyse (all are practice/catch trials or excluded)")
    t3, n3 = stats.table3(main, methods)
    t4, n4 = stats.table4(main, methods)
    t5_long, t5_wide = stats.table5(main, methods)
    fried = stats.friedman_quality(main, methods)
    eff = stats.quality_effect_sizes(main, methods, n_boot=n_boot, seed=seed)
    coch = stats.cochran_mcnemar_accuracy(main, methods)
    rm, mm = stats.duration_models(main, methods)
    rel, nrel = stats.reliability(main, methods)
    notes += n3 + n4 + fried.messages + coch.messages + rm.messages + mm.messages + nrel
    return dict(
        main=main,
        methods=methods,
        exclusions=excl,
        t3=t3,
        t4=t4,
        t5_long=t5_long,
        t5_wide=t5_wide,
        friedman=fried,
        effects=eff,
        cochran=coch,
        rm_anova=rm,
        mixed=mm,
        reliability=rel,
        notes=list(dict.fromkeys(notes)),
    )


def _test_line(t: stats.TestResult) -> str:
    if not np.isfinite(t.p):
        return f"- **{t.name}**: not run ({'; '.join(t.messages) or 'too little data'})"
    eff = "".join(
        f", {k.replace('_', ' ')} = {fmt_num(v, 3)}"
        for k, v in t.effect.items()
        if isinstance(v, float)
    )
    return f"- **{t.name}**: statistic = {fmt_num(t.statistic, 3)}, df = {t.df}, p = {fmt_p(t.p)}, n = {t.n}{eff}"


def beyond_markdown(r: dict) -> str:
    """The repeated-measures section: every rater sees every method, which the paper's tests ignore."""
    out = [
        "## Beyond the paper: repeated-measures analysis",
        "",
        "Every participant rates every method, so observations are repeated measures; the paper's "
        "tests (Table 4) treat them as independent. These tests take the pairing into account.",
        "",
        "### Quality",
        _test_line(r["friedman"]),
        "",
        "Post hoc on per-participant mean quality: Conover (Holm), Nemenyi, and the paired "
        "Wilcoxon signed-rank test (raw and Holm). Nemenyi is conservative with many methods; "
        "Conover is liberal when rankings are near-unanimous (Kendall's W near 1).",
        "",
    ]
    if r["friedman"].pairs is not None:
        out.append(frame_markdown(r["friedman"].pairs))
    out += [
        "Effect sizes on the ratings: rank-biserial r = P(a > b) − P(a < b), 95% CI from a "
        "participant bootstrap; p_mannwhitney is the tie-corrected rank-sum p (CI and p left "
        "empty where a method has fewer than 2 ratings).",
        "",
        frame_markdown(r["effects"]),
        "### Accuracy",
        _test_line(r["cochran"]),
        "",
        "Pairwise exact McNemar on matched blocks (participant × true expression × occurrence), "
        "Holm-adjusted; odds ratio = (a right, b wrong) / (a wrong, b right) with exact 95% CI; "
        "p_sign_participants: exact sign test over participants (robust to clustering).",
        "",
    ]
    if r["cochran"].pairs is not None and not r["cochran"].pairs.empty:
        out.append(frame_markdown(r["cochran"].pairs))
    out += [
        "### Duration (log seconds per trial)",
        _test_line(r["rm_anova"]),
        _test_line(r["mixed"]),
        "",
    ]
    if r["mixed"].pairs is not None:
        out += [
            "Typical response time relative to the reference method (exp of the mixed-model "
            "coefficient, 95% CI):",
            "",
            frame_markdown(r["mixed"].pairs),
        ]
    out += [
        "### Inter-rater reliability",
        "Units are stimuli (a face through a method) rated by 2 or more participants: Fleiss' κ on "
        "the expression choices, Krippendorff's α (ordinal) on the quality ratings.",
        "",
        frame_markdown(r["reliability"]),
    ]
    return "\n".join(out) + "\n"


def write_outputs(data: StudyData, r: dict, out: Path, plots: bool = True) -> list[Path]:
    sim = data.simulated
    md = write_paper_tables(out, r["t3"], r["t4"], r["t5_long"], r["t5_wide"], simulated=sim)
    extra = {
        "quality_friedman_posthoc": r["friedman"].pairs,
        "quality_effect_sizes": r["effects"],
        "accuracy_mcnemar": r["cochran"].pairs,
        "duration_mixed_model": r["mixed"].pairs,
        "reliability": r["reliability"],
        "exclusions": r["exclusions"].table(),
    }
    written = [out / out_name(s, e, sim) for s in md for e in ("csv", "md", "tex")]
    for stem, df in extra.items():
        if df is not None:
            written.append(out / out_name(stem, "csv", sim))
            df.to_csv(written[-1], index=False, float_format="%.6g")
    omnibus = pd.DataFrame(
        [
            {
                "test": t.name,
                "statistic": t.statistic,
                "df": t.df,
                "p": t.p,
                "n": t.n,
                **{k: v for k, v in t.effect.items() if isinstance(v, float)},
            }
            for t in (r["friedman"], r["cochran"], r["rm_anova"], r["mixed"])
        ]
    )
    written.append(out / out_name("omnibus_tests", "csv", sim))
    omnibus.to_csv(written[-1], index=False, float_format="%.6g")
    head = [f"# Study report{' (SIMULATED DATA)' if sim else ''}", ""]
    if sim:
        head += [f"**{SIMULATED_BANNER}**", ""]
    head += [
        f"Source: `{data.source}`; {r['main']['participant_id'].nunique()} participants, "
        f"{len(r['main'])} analysed trials; methods: {', '.join(label(m) for m in r['methods'])}.",
        "",
        "## Exclusions",
        "",
        frame_markdown(r["exclusions"].table()),
        "## Notes",
        "",
        *([f"- {n}" for n in r["notes"]] or ["- none"]),
        "",
        "## The paper's tables (Yoshihashi et al. 2022, Tables 3-5)",
        "",
        "",
    ]
    body = [m.replace(f"**{SIMULATED_BANNER}**\n\n", "") for m in md.values()]
    if plots:
        from analysis.plots import write_plots

        pngs = write_plots(out, r["main"], r["methods"], r["t5_wide"], sim)
        written += pngs
        body.append("## Plots\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in pngs) + "\n")
    report = "\n".join(head) + "\n".join(body) + "\n" + beyond_markdown(r)
    written.append(out / out_name("report", "md", sim))
    written[-1].write_text(report)
    return written


def terminal_summary(data: StudyData, r: dict) -> str:
    lines = []
    if data.simulated:
        lines += ["=" * 78, SIMULATED_BANNER, "=" * 78]
    from analysis.tables import table3_display, table4_display, table5_display, to_markdown

    lines += [
        to_markdown(table3_display(r["t3"]), "Table 3: HQS, accuracy (%), duration (s); mean ± SD"),
        to_markdown(
            table4_display(r["t4"]),
            "Table 4: p-values (rank-sum on ratings; Tukey HSD on per-participant values)",
        ),
        to_markdown(
            table5_display(r["t5_wide"]),
            "Table 5: accuracy (%) per expression × method, over all trials (Table 3 averages "
            "per participant, so its accuracy can differ)",
        ),
        "### Beyond the paper (repeated measures)",
        *(_test_line(t) for t in (r["friedman"], r["cochran"], r["rm_anova"], r["mixed"])),
        f"- reliability (all stimuli): Fleiss' kappa = {fmt_num(r['reliability']['fleiss_kappa_expression'].iloc[0], 3)}, "
        f"Krippendorff's alpha (ordinal) = {fmt_num(r['reliability']['kalpha_quality_ordinal'].iloc[0], 3)}",
    ]
    if r["notes"]:
        lines += ["", "Notes:", *(f"- {n}" for n in r["notes"])]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="analysis/report.py",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    add_arguments(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    viewport = None
    if args.min_viewport:
        try:
            w, h = (int(v) for v in args.min_viewport.lower().split("x"))
            viewport = (w, h)
        except ValueError:
            print("error: --min-viewport is WxH, e.g. 600x500", file=sys.stderr)
            return 2
    rules = stats.Exclusions(
        args.catch_min_accuracy,
        args.rt_min_ms,
        args.rt_max_ms,
        screened_out=args.exclude_screened_out,
        min_viewport=viewport,
        incomplete=args.exclude_incomplete,
    )
    if rules.catch_min_accuracy is not None and not 0 <= rules.catch_min_accuracy <= 1:
        print("error: --catch-min-accuracy is a share between 0 and 1 (e.g. 0.75)", file=sys.stderr)
        return 2
    if None not in (rules.rt_min_ms, rules.rt_max_ms) and rules.rt_min_ms >= rules.rt_max_ms:
        print("error: --rt-min-ms must be below --rt-max-ms", file=sys.stderr)
        return 2
    try:
        data = load(args)
        r = analyse(data, rules, n_boot=args.bootstrap, seed=args.seed)
    except StudyDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else new_run_dir("report")  # only once there is a report
    out.mkdir(parents=True, exist_ok=True)
    files = write_outputs(data, r, out, plots=not args.no_plots)
    if not args.quiet:
        print(terminal_summary(data, r))
        if rules.any:
            print("\nExclusions:\n" + frame_markdown(r["exclusions"].table()))
    from analysis.agreement import PROXY_CSV, agreement, read_proxy

    machine = read_proxy(args.proxy or PROXY_CSV)
    if machine is not None:
        agree = agreement(r["t5_long"], machine)
        print("\n" + ("(SIMULATED people) " if data.simulated else "") + agree.summary())
        agree.cells.to_csv(out / out_name("machine_agreement", "csv", data.simulated), index=False)
    print(
        f"\nwrote {len(files)} file(s) to {out}" + (" (SIMULATED DATA)" if data.simulated else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
