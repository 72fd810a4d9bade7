"""Tables 3, 4 and 5 (and the beyond-the-paper tables) as CSV (fixed columns), Markdown and LaTeX.

CSV keeps method keys and raw numbers; Markdown and LaTeX use the registry's labels, the paper's
layout (methods as columns in Tables 3 and 5) and mean ± SD cells.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from model.config import MASKED, REAL
from model.methods.registry import METHODS

SIMULATED_BANNER = "SIMULATED DATA: made by analysis/simulate.py, not a study result."


def label(key: str) -> str:
    """Display name of a method key (registry label; pseudo-methods; unknown keys as they are)."""
    if key in METHODS:
        return METHODS[key].label
    return {REAL: "Real image", MASKED: "Masked input", "average": "Average", "all": "All"}.get(
        key, key
    )


def fmt_num(x: float, digits: int = 2) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def fmt_mean_sd(mean: float, sd: float, digits: int = 2) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {fmt_num(sd, digits)}"


def fmt_p(p: float) -> str:
    """p as the paper prints it: 3 significant digits, scientific below 0.01."""
    if p is None or not np.isfinite(p):
        return "–"
    if p == 0:
        return "< 1e-300"
    return f"{p:.2e}" if p < 0.01 else f"{p:.3f}"


def tex_p(p: float) -> str:
    s = fmt_p(p)
    if "e" in s and not s.startswith("<"):
        mant, exp = s.split("e")
        return f"${mant} \\times 10^{{{int(exp)}}}$"
    return s.replace("–", "--").replace("<", "$<$")


# --------------------------------------------------------------------------------------------
# Display frames (strings): what .md, .tex and the terminal show


def table3_display(t3: pd.DataFrame) -> pd.DataFrame:
    """Rows: the paper's metrics plus n; columns: methods (labels)."""
    cols = {}
    for _, r in t3.iterrows():
        cols[label(r["method"])] = [
            fmt_mean_sd(r["hqs_mean"], r["hqs_sd"]),
            fmt_mean_sd(r["accuracy_mean"], r["accuracy_sd"]),
            fmt_mean_sd(r["duration_mean"], r["duration_sd"]),
            str(int(r["n_participants"])),
            str(int(r["n_ratings"])),
        ]
    idx = ["HQS", "Accuracy (%)", "Duration (s)", "Participants", "Ratings"]
    return pd.DataFrame(cols, index=pd.Index(idx, name="Metric"))


def table4_display(t4: pd.DataFrame) -> pd.DataFrame:
    rows = {
        f"{label(r['method_a'])} – {label(r['method_b'])}": [
            fmt_p(r["p_hqs"]),
            fmt_p(r["p_accuracy"]),
            fmt_p(r["p_duration"]),
        ]
        for _, r in t4.iterrows()
    }
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["HQS (rank-sum)", "Accuracy (Tukey)", "Duration (Tukey)"]
    ).rename_axis("Method pair")


def table5_display(wide: pd.DataFrame) -> pd.DataFrame:
    out = wide.copy()
    out.index = [e.capitalize() if e != "average" else "Average" for e in out.index]
    out.columns = [label(c) for c in out.columns]
    return out.map(lambda v: fmt_num(v, 1)).rename_axis("Expression")


# --------------------------------------------------------------------------------------------
# Writers


def to_markdown(df: pd.DataFrame, title: str = "", note: str = "") -> str:
    """A GitHub Markdown table (pandas' own needs `tabulate`, which the project does not ship)."""
    head = [str(df.index.name or "")] + [str(c) for c in df.columns]
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| " + " | ".join(head) + " |",
        "|" + "|".join([" --- "] + [" ---: "] * len(df.columns)) + "|",
    ]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
    ):
        s = s.replace(a, b)
    return s.replace("±", r"$\pm$").replace("–", "--")


def to_latex(df: pd.DataFrame, caption: str, tex_label: str, raw_cells: bool = False) -> str:
    """A booktabs table; `raw_cells` keeps cells that are already LaTeX (p-values)."""
    cols = "l" + "r" * len(df.columns)
    head = " & ".join(_tex_escape(str(c)) for c in [df.index.name or "", *df.columns])
    body = [
        " & ".join(
            [_tex_escape(str(i))] + [str(v) if raw_cells else _tex_escape(str(v)) for v in row]
        )
        + r" \\"
        for i, row in df.iterrows()
    ]
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            f"\\caption{{{_tex_escape(caption)}}}",
            f"\\label{{{tex_label}}}",
            f"\\begin{{tabular}}{{{cols}}}",
            r"\toprule",
            head + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )


def out_name(stem: str, ext: str, simulated: bool) -> str:
    """File name of an output; every output made from simulated data says so in its name."""
    return f"{stem}_simulated.{ext}" if simulated else f"{stem}.{ext}"


def write_paper_tables(
    out: Path,
    t3: pd.DataFrame,
    t4: pd.DataFrame,
    t5_long: pd.DataFrame,
    t5_wide: pd.DataFrame,
    *,
    simulated: bool,
    notes: str = "",
) -> dict[str, str]:
    """Write table3/4/5 as .csv (fixed columns), .md and .tex; return the Markdown of each."""
    out.mkdir(parents=True, exist_ok=True)
    banner = f"**{SIMULATED_BANNER}**\n\n" if simulated else ""
    tex_banner = f"% {SIMULATED_BANNER}\n" if simulated else ""
    cap_sim = " (SIMULATED DATA)" if simulated else ""
    specs = {
        "table3": (
            t3,
            table3_display(t3),
            "Table 3: HQS, accuracy and duration per method (mean ± SD)" + cap_sim,
            "HQS over all ratings; accuracy and duration per participant, then over participants. SD with ddof = 1.",
        ),
        "table4": (
            t4,
            table4_display(t4),
            "Table 4: p-values of each method pair" + cap_sim,
            "HQS: Wilcoxon rank-sum (scipy.stats.ranksums, no tie correction) on the ratings; "
            "accuracy and duration: Tukey's HSD over all methods on per-participant values. Two-sided.",
        ),
        "table5": (
            t5_long,
            table5_display(t5_wide),
            "Table 5: accuracy (%) per facial expression and method" + cap_sim,
            "Pooled over participants; averages pool every trial of the row or column.",
        ),
    }
    md = {}
    for stem, (csv_df, disp, caption, note) in specs.items():
        csv_df.to_csv(out / out_name(stem, "csv", simulated), index=False, float_format="%.6g")
        md[stem] = banner + to_markdown(disp, caption, note)
        (out / out_name(stem, "md", simulated)).write_text(md[stem])
        tex_df = disp
        raw = False
        if stem == "table4":
            tex_df = pd.DataFrame(
                {
                    "HQS (rank-sum)": [tex_p(p) for p in t4["p_hqs"]],
                    "Accuracy (Tukey)": [tex_p(p) for p in t4["p_accuracy"]],
                    "Duration (Tukey)": [tex_p(p) for p in t4["p_duration"]],
                },
                index=pd.Index([_tex_escape(i) for i in disp.index], name="Method pair"),
            )
            raw = True
        (out / out_name(stem, "tex", simulated)).write_text(
            tex_banner + to_latex(tex_df, caption, f"tab:study-{stem}", raw_cells=raw)
        )
    return md


def frame_markdown(df: pd.DataFrame, digits: int = 3, p_cols: tuple[str, ...] = ()) -> str:
    """Markdown of a numeric result frame: p columns as p-values, method keys as labels."""
    disp = df.copy()
    for c in disp.columns:
        if c in p_cols or c.startswith("p_") or c == "p":
            disp[c] = [fmt_p(v) for v in disp[c]]
        elif c in ("method", "method_a", "method_b"):
            disp[c] = [label(v) for v in disp[c]]
        elif pd.api.types.is_float_dtype(disp[c]):
            disp[c] = [
                fmt_num(v, digits) if not (isinstance(v, float) and math.isinf(v)) else "∞"
                for v in disp[c]
            ]
    disp.index = [""] * len(disp)
    first = disp.columns[0]
    disp = disp.set_index(first)
    return to_markdown(disp)
