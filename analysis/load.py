"""Read the study's long-format trials (docs/DESIGN.md export CSV, or the study database) and validate them.

Everything downstream (stats, tables, plots, report) takes the `StudyData` this module returns.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from model.config import EXPRESSIONS, MASKED, QUALITY, REAL
from model.methods.registry import METHODS, ordered
from study.db import database_url, upgrade_schema
from study.service import StudyService

# The docs/DESIGN.md long-format export: column -> kind ("str", "int", "float", "flag").
COLUMNS: dict[str, str] = {
    "participant_id": "str",
    "trial_index": "int",
    "stimulus_id": "str",
    "image_id": "str",
    "method": "str",
    "expression_true": "str",
    "expression_chosen": "str",
    "correct": "flag",
    "quality": "int",
    "rt_ms": "float",
    "is_practice": "flag",
    "is_catch": "flag",
    "answered_at": "str",
}
# Online-study columns the export adds after docs/DESIGN.md's: kept when present (exclusion rules).
OPTIONAL_COLUMNS: dict[str, str] = {
    "screened_out": "str",
    "viewport_width": "float",
    "viewport_height": "float",
    "n_blur": "float",
    "completed": "flag",
}
# The export's other recruitment/browser columns: known, not used, not reported as unknown.
KNOWN_EXTRA = (
    "code_source",
    "recruitment_study_id",
    "recruitment_session_id",
    "user_agent",
    "screen_width",
    "screen_height",
    "device_pixel_ratio",
)


class StudyDataError(ValueError):
    """The input cannot be analysed at all (missing file or columns, no usable trial); the message says why."""


@dataclass
class StudyData:
    """Validated trials (one row a trial, docs/DESIGN.md columns and dtypes) and what was noticed on the way."""

    trials: pd.DataFrame
    methods: list[str]  # analysis order: registry order, then unknown keys, then masked, real last
    source: str
    simulated: bool
    messages: list[str] = field(default_factory=list)

    @property
    def main(self) -> pd.DataFrame:
        """The analysed trials: practice and catch trials left out (docs/DESIGN.md)."""
        t = self.trials
        return t[(t["is_practice"] == 0) & (t["is_catch"] == 0)]


def method_order(present: Iterable[str]) -> tuple[list[str], list[str]]:
    """(ordered methods, unknown ones): registry order, unknown keys (kept, sorted), masked, `real` last.

    Unknown keys are kept rather than refused: a study may include a method that the registry of
    this checkout no longer has, and dropping its trials silently would change every other number.
    """
    order = ordered(present)  # the one display order (model.methods.registry)
    return order, [k for k in order if k not in METHODS and k not in (MASKED, REAL)]


def is_simulated(source: str, trials: pd.DataFrame) -> bool:
    """Simulated exports carry "simulated" in their file name, and `sim-` participant codes."""
    if "simulated" in Path(str(source)).name.lower():
        return True
    ids = trials["participant_id"].astype(str)
    return len(ids) > 0 and bool(ids.str.startswith("sim-").all())


def _flag(series: pd.Series, name: str, messages: list[str]) -> pd.Series:
    """0/1 flags; accepts true/false/yes/no text too. Unreadable values become <NA>."""
    text = series.astype("string").str.strip().str.lower()
    mapped = text.map(
        {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "1.0": 1, "0.0": 0},
        na_action="ignore",
    )
    return pd.to_numeric(mapped, errors="coerce").astype("Int64")


def validate(raw: pd.DataFrame, source: str) -> StudyData:
    """Check columns and values; coerce dtypes; drop unusable rows with a counted message.

    Raises StudyDataError only when nothing can be analysed (required columns missing, no rows).
    """
    messages: list[str] = []
    raw = raw.copy()
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise StudyDataError(
            f"{source}: missing column(s) {', '.join(missing)}; the long-format export needs "
            f"{', '.join(COLUMNS)} (docs/DESIGN.md, 'Study: the export')"
        )
    known = {*COLUMNS, *OPTIONAL_COLUMNS, *KNOWN_EXTRA}
    extra = [c for c in raw.columns if c not in known]
    if extra:
        messages.append(f"ignored unknown column(s): {', '.join(extra)}")
    if raw.empty:
        raise StudyDataError(f"{source}: no trials (the export has a header but no rows)")
    optional = [c for c in OPTIONAL_COLUMNS if c in raw.columns]
    t = raw[list(COLUMNS) + optional].copy()
    for col in optional:
        if OPTIONAL_COLUMNS[col] == "str":
            t[col] = t[col].astype("string").str.strip().fillna("")
        else:
            t[col] = pd.to_numeric(t[col], errors="coerce")

    for col, kind in COLUMNS.items():
        if kind == "str":
            t[col] = t[col].astype("string").str.strip()
        elif kind == "flag":
            t[col] = _flag(t[col], col, messages)
        else:
            t[col] = pd.to_numeric(t[col], errors="coerce")
    for col in ("method", "expression_true", "expression_chosen"):
        t[col] = t[col].str.lower()
    for col in ("is_practice", "is_catch"):
        bad = t[col].isna()
        if bad.any():
            messages.append(f"{int(bad.sum())} row(s) with unreadable {col}: treated as 0")
            t.loc[bad, col] = 0

    # Rows that cannot count anywhere: no participant, no method, an unknown true expression.
    drop = pd.Series(False, index=t.index)
    reasons = {
        "no participant_id": t["participant_id"].isna() | (t["participant_id"] == ""),
        "no method": t["method"].isna() | (t["method"] == ""),
        "expression_true not one of " + "/".join(EXPRESSIONS): ~t["expression_true"].isin(
            EXPRESSIONS
        ),
    }
    for why, bad in reasons.items():
        bad = bad.fillna(True) & ~drop
        if bad.any():
            examples = ", ".join(sorted({str(v) for v in raw.loc[bad[bad].index, _col(why)]})[:5])
            messages.append(f"dropped {int(bad.sum())} row(s): {why} (e.g. {examples})")
            drop |= bad
    t = t[~drop].copy()
    if t.empty:
        raise StudyDataError(
            f"{source}: no usable trial left after validation: {'; '.join(messages)}"
        )

    # An unknown chosen expression (or none) cannot be right: it counts as an error, but is reported.
    bad_choice = ~t["expression_chosen"].isin(EXPRESSIONS)
    if bad_choice.any():
        vals = ", ".join(sorted({str(v) for v in t.loc[bad_choice, "expression_chosen"]})[:5])
        messages.append(
            f"{int(bad_choice.sum())} trial(s) with expression_chosen outside the vocabulary "
            f"({vals}): counted as not correct, left out of Fleiss' kappa"
        )
        t.loc[bad_choice, "expression_chosen"] = pd.NA
    recomputed = (t["expression_chosen"] == t["expression_true"]).fillna(False).astype("Int64")
    disagree = t["correct"].isna() | (t["correct"] != recomputed)
    if disagree.any():
        messages.append(
            f"{int(disagree.sum())} row(s) where `correct` is missing or disagrees with "
            "expression_chosen == expression_true: recomputed from the expressions"
        )
    t["correct"] = recomputed.astype(int)

    lo, hi = QUALITY.lowest, QUALITY.highest
    q = t["quality"]
    bad_q = q.notna() & ((q < lo) | (q > hi) | (q != np.round(q)))
    if bad_q.any():
        vals = ", ".join(sorted({str(v) for v in q[bad_q]})[:5])
        messages.append(
            f"{int(bad_q.sum())} quality value(s) outside the integers {lo}..{hi} ({vals}): "
            "treated as missing"
        )
        t.loc[bad_q, "quality"] = np.nan
    n_missing_q = int(t["quality"].isna().sum())
    if n_missing_q:
        messages.append(f"{n_missing_q} trial(s) without a quality rating: left out of HQS only")
    t["quality"] = t["quality"].astype("Int64")

    rt = t["rt_ms"]
    bad_rt = rt.isna() | (rt <= 0) | ~np.isfinite(rt.astype(float).fillna(np.nan))
    if bad_rt.any():
        messages.append(
            f"{int(bad_rt.sum())} trial(s) with a missing or non-positive rt_ms: left out of durations"
        )
        t.loc[bad_rt, "rt_ms"] = np.nan
    if t["trial_index"].isna().any():
        messages.append(
            f"{int(t['trial_index'].isna().sum())} row(s) without trial_index: ordered last"
        )
    t["trial_index"] = t["trial_index"].fillna(np.inf)

    dup = t.duplicated(["participant_id", "trial_index"], keep="first") & np.isfinite(
        t["trial_index"]
    )
    if dup.any():
        messages.append(
            f"dropped {int(dup.sum())} duplicated (participant_id, trial_index) row(s), kept the first"
        )
        t = t[~dup]

    methods, unknown = method_order(t["method"].unique())
    if unknown:
        messages.append(
            f"method(s) not in the registry (model.methods.registry.METHODS): {', '.join(unknown)}; "
            "kept and listed after the registry's methods"
        )
    t = t.sort_values(["participant_id", "trial_index"], kind="stable").reset_index(drop=True)
    data = StudyData(
        trials=t,
        methods=methods,
        source=str(source),
        simulated=is_simulated(source, t),
        messages=messages,
    )
    if data.main.empty:
        messages.append("every trial is a practice or catch trial: nothing to tabulate")
    return data


def _col(reason: str) -> str:
    return {"no participant_id": "participant_id", "no method": "method"}.get(
        reason, "expression_true"
    )


def read_csv(path: str | Path) -> StudyData:
    """Validated trials from a long-format export CSV."""
    path = Path(path)
    if not path.is_file():
        raise StudyDataError(f"no such CSV file: {path}")
    try:
        raw = _parse_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise StudyDataError(f"{path}: not a readable CSV ({exc})") from exc
    return validate(raw, str(path))


def _parse_csv(source) -> pd.DataFrame:
    """Every cell as text (validate() coerces), empty cells missing: an export file or the
    study's export_csv() read the same way."""
    return pd.read_csv(source, dtype=str, keep_default_na=True)


def read_db(url: str | None = None) -> StudyData:
    """Validated trials from the study database at `url` (SQLAlchemy URL; default: the study's
    own, study.db.database_url()), read through the study's export (StudyService.export_rows),
    so the analysis and `unmask study export` can never disagree. An older database gains the
    newer schema's tables and nullable columns first, as the study's own engine does."""
    url = url or database_url()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise StudyDataError(
                f"no study database at {path} (run the study first, or pass --db URL / --csv FILE)"
            )
    try:  # ImportError: the URL's driver (psycopg for PostgreSQL, ...) is an optional install
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise StudyDataError(f"cannot open database URL {url!r}: {exc}") from exc
    try:
        upgrade_schema(engine)
        text = StudyService(engine).export_csv()
    except sa.exc.SQLAlchemyError as exc:
        first = str(exc).splitlines()[0]  # the driver's error, without SQLAlchemy's SQL dump
        raise StudyDataError(
            f"cannot read the study tables at {_display_url(url)}: {first} (is it a study database?)"
        ) from exc
    finally:
        engine.dispose()
    if text.count("\n") < 2:  # the header alone
        raise StudyDataError(
            f"{_display_url(url)}: the study database has no answered trials yet "
            "(pass --csv FILE to analyse an export instead)"
        )
    return validate(_parse_csv(io.StringIO(text)), _display_url(url))


def _display_url(url: str) -> str:
    """The URL without its password, for messages and reports."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  (a message must never fail)
        return url
