"""report.py end to end: as a plain script and as a module, on a simulated export and on a real
SQLite study database written through study/schema.py, with the fixed CSV columns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import sqlalchemy

from analysis import report
from analysis.simulate import SimConfig, simulate, write
from analysis.stats import TABLE3_COLUMNS, TABLE4_COLUMNS, TABLE5_COLUMNS
from model.config import REPO_DIR
from tests.analysis.fixtures import hand_frame

SMALL = SimConfig(participants=6, per_expression=1, inattentive=1, seed=3)


def _run(*args: str, module: bool = False) -> subprocess.CompletedProcess:
    cmd = (
        [sys.executable, "-m", "analysis.report"]
        if module
        else [sys.executable, "analysis/report.py"]
    )
    return subprocess.run(
        cmd + list(args), cwd=REPO_DIR, capture_output=True, text=True, timeout=300
    )


def test_script_on_simulated_export(tmp_path):
    export = write(tmp_path / "in", SMALL)
    assert "simulated" in export.name
    out = tmp_path / "out"
    proc = _run(
        "--csv",
        str(export),
        "--out",
        str(out),
        "--bootstrap",
        "100",
        "--catch-min-accuracy",
        "0.75",
        "--rt-min-ms",
        "250",
    )
    assert proc.returncode == 0, proc.stderr
    assert "SIMULATED DATA" in proc.stdout and "Table 3" in proc.stdout and "Table 5" in proc.stdout
    files = sorted(p.name for p in out.iterdir())
    assert all("simulated" in f for f in files), files  # every output is marked in its name
    for stem in ("table3", "table4", "table5"):
        for ext in ("csv", "md", "tex"):
            assert f"{stem}_simulated.{ext}" in files
        assert "SIMULATED" in (out / f"{stem}_simulated.md").read_text()
        assert "SIMULATED" in (out / f"{stem}_simulated.tex").read_text()
    for png in ("quality_by_method", "accuracy_heatmap", "duration_by_method"):
        assert (out / f"{png}_simulated.png").stat().st_size > 1000
    t3 = pd.read_csv(out / "table3_simulated.csv")
    t4 = pd.read_csv(out / "table4_simulated.csv")
    t5 = pd.read_csv(out / "table5_simulated.csv")
    assert list(t3.columns) == TABLE3_COLUMNS
    assert list(t4.columns) == TABLE4_COLUMNS
    assert list(t5.columns) == TABLE5_COLUMNS
    assert t3["method"].tolist()[-1] == "real" and t3["method"].tolist()[0] == "telea"
    assert len(t4) == len(t3) * (len(t3) - 1) // 2
    assert t3["n_participants"].max() == SMALL.participants - 1  # the inattentive rater excluded
    excl = pd.read_csv(out / "exclusions_simulated.csv")
    assert excl["participants_excluded"].sum() == 1
    md = (out / "report_simulated.md").read_text()
    assert (
        "Beyond the paper" in md and "Friedman" in md and "Cochran" in md and "Krippendorff" in md
    )


def test_module_form_and_edge_case_input(tmp_path):
    df = hand_frame()
    df["extra_column"] = 1
    df.loc[df["method"] == "landmark", "quality"] = None  # a method without ratings
    df = df[~((df["participant_id"] == "P2") & (df["method"] == "real"))]  # a skipped method
    path = tmp_path / "study_export.csv"
    df.to_csv(path, index=False)
    proc = _run(
        "--csv",
        str(path),
        "--out",
        str(tmp_path / "o"),
        "--no-plots",
        "--bootstrap",
        "50",
        module=True,
    )
    assert proc.returncode == 0, proc.stderr
    for needle in ("extra_column", "landmark: no quality ratings", "P2 has no trial of real"):
        assert needle in proc.stdout
    assert "SIMULATED" not in proc.stdout
    assert (tmp_path / "o" / "table3.csv").is_file()  # real data: plain names


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path):
    path = tmp_path / "broken.csv"
    hand_frame().drop(columns=["rt_ms", "quality"]).to_csv(path, index=False)
    proc = _run("--csv", str(path), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "missing column(s) quality, rt_ms" in proc.stderr and "Traceback" not in proc.stderr
    assert (
        report.main(["--db", f"sqlite:///{tmp_path / 'none.sqlite'}", "--out", str(tmp_path / "o")])
        == 2
    )


def _write_study_db(path: Path, trials: pd.DataFrame) -> str:
    """Write trials into a study database through study/schema.py's models (a real SQLite file)."""
    from datetime import UTC, datetime

    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from study import schema

    url = f"sqlite:///{path}"
    engine = create_engine(url)
    schema.Base.metadata.create_all(engine)
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    with Session(engine) as s, s.begin():
        for sid, g in trials.groupby("stimulus_id").first().iterrows():
            role = "practice" if g["is_practice"] else "catch" if g["is_catch"] else "main"
            s.add(
                schema.Stimulus(
                    id=sid,
                    image_id=g["image_id"],
                    expression=g["expression_true"],
                    method=g["method"],
                    role=role,
                    file=f"{sid}.png",
                    sha256="0" * 64,
                )
            )
        for i, (code, g) in enumerate(trials.groupby("participant_id", sort=True)):
            p = schema.Participant(
                code=code, ordinal=i, list_index=0, seed=i, token_hash=f"{i:064d}", consent_at=now
            )
            s.add(p)
            s.flush()
            for r in g.itertuples():
                t = schema.Trial(
                    participant_id=p.id,
                    trial_index=r.trial_index,
                    stimulus_id=r.stimulus_id,
                    image_id=r.image_id,
                    is_practice=bool(r.is_practice),
                    is_catch=bool(r.is_catch),
                )
                s.add(t)
                s.flush()
                s.add(
                    schema.Response(
                        trial_id=t.id,
                        participant_id=p.id,
                        trial_index=r.trial_index,
                        expression_chosen=r.expression_chosen,
                        rt_ms=r.rt_ms,
                        answered_at=now,
                        quality=int(r.quality),
                    )
                )
    engine.dispose()
    return url


def test_report_on_a_study_database_matches_the_csv(tmp_path):
    trials = simulate(SMALL)
    url = _write_study_db(tmp_path / "study.sqlite", trials)
    csv = tmp_path / "study_export_simulated.csv"
    trials.to_csv(csv, index=False)
    args = ["--out", str(tmp_path / "db"), "--no-plots", "--quiet", "--bootstrap", "50"]
    assert report.main(["--db", url, *args]) == 0
    assert report.main(["--csv", str(csv), *args[:1], str(tmp_path / "csv"), *args[2:]]) == 0
    for stem in ("table3", "table4", "table5"):
        a = pd.read_csv(tmp_path / "db" / f"{stem}_simulated.csv")  # sim- participant codes
        b = pd.read_csv(tmp_path / "csv" / f"{stem}_simulated.csv")
        pd.testing.assert_frame_equal(a, b)


def test_database_read_equals_the_study_export(tmp_path):
    """The analysis reads a database through the study's own export: the same trials as the
    CSV that `unmask study export` writes from it, also from a database older than the online
    columns and the browser-events table (upgraded on the way, as the study's engine does)."""
    from analysis import load
    from model.cli import main as unmask

    trials = simulate(SimConfig(participants=2, per_expression=1, inattentive=0))
    url = _write_study_db(tmp_path / "s.sqlite", trials)
    with sqlalchemy.create_engine(url).begin() as conn:  # as before the online study
        conn.exec_driver_sql("DROP TABLE browser_events")
        conn.exec_driver_sql("ALTER TABLE participants DROP COLUMN viewport_width")
    via_db = load.read_db(url).trials
    export = tmp_path / "export.csv"
    assert unmask(["study", "export", "--db", url, "--out", str(export)]) == 0
    via_csv = load.read_csv(export).trials
    pd.testing.assert_frame_equal(via_db, via_csv)
    assert len(via_db) == len(trials)


def test_default_output_is_a_new_run_folder_not_results(tmp_path, monkeypatch, capsys):
    """report.py wrote into the committed results/study by default."""
    from model.config import RESULTS_DIR

    committed = {p: p.stat().st_mtime_ns for p in (RESULTS_DIR / "study").iterdir()}
    path = tmp_path / "export.csv"
    hand_frame().to_csv(path, index=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["--csv", str(path), "--no-plots", "--bootstrap", "20", "--quiet"]
    assert report.main(argv) == 0
    assert report.main(argv) == 0  # the same second: its own folder
    runs = sorted((work / "runs" / "report").iterdir())
    assert len(runs) == 2 and [p.name for p in work.iterdir()] == ["runs"]
    for run in runs:
        assert list(pd.read_csv(run / "table3.csv").columns) == TABLE3_COLUMNS
    assert "runs/report/" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in committed} == committed
    # Bad input leaves no empty run folder behind.
    assert report.main(["--csv", str(tmp_path / "missing.csv")]) == 2
    assert len(list((work / "runs" / "report").iterdir())) == 2


def test_sparse_method_is_a_note_in_the_report(tmp_path, capsys):
    """One trial of a method: no rank-sum on it, and the participants stay in the omnibus tests."""
    from tests.analysis.fixtures import twenty_frame

    path = tmp_path / "export.csv"
    twenty_frame().to_csv(path, index=False)
    out = tmp_path / "o"
    assert (
        report.main(["--csv", str(path), "--out", str(out), "--no-plots", "--bootstrap", "20"]) == 0
    )
    printed = capsys.readouterr().out
    assert "fewer than 2 ratings for unmask (n = 1)" in printed
    assert (
        "unmask (data from 1 of 20 participants) left out of the test, not the participants"
        in printed
    )
    omnibus = pd.read_csv(out / "omnibus_tests.csv").set_index("test")
    assert omnibus.loc["Friedman (quality, per-participant means)", "n"] == 20
    t4 = pd.read_csv(out / "table4.csv")
    assert t4.loc[(t4["method_a"] == "unmask") | (t4["method_b"] == "unmask"), "p_hqs"].isna().all()


def test_simulate_defaults_to_a_run_folder(tmp_path, monkeypatch):
    from analysis import simulate

    monkeypatch.chdir(tmp_path)
    assert (
        simulate.main(["--participants", "2", "--per-expression", "1", "--inattentive", "0"]) == 0
    )
    (run,) = (tmp_path / "runs" / "simulate").iterdir()
    assert [p.name for p in run.iterdir()] == ["study_export_simulated_seed0_n2.csv"]
