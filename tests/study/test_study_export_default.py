"""`unmask study export` without --out: a new run folder, never a stray file in the working
directory (README's `--out responses.csv` left one in the repository root)."""

from __future__ import annotations

import csv

from model.cli import main
from study.service import EXPORT_COLUMNS


def test_export_defaults_to_a_run_folder(study, tmp_path, monkeypatch, capsys):
    info = study.start_session("exp", consent=True)
    view = study.next_trial(info.token)
    study.record_response(info.token, view.trial_index, "sad", 900)
    db = tmp_path / "study.sqlite"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    assert main(["study", "export", "--db", str(db)]) == 0
    assert main(["study", "export", "--db", str(db)]) == 0  # the same second: its own folder
    assert [p.name for p in work.iterdir()] == ["runs"]
    runs = sorted((work / "runs" / "study").iterdir())
    assert len(runs) == 2
    for run in runs:
        with open(run / "study_export.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert tuple(rows[0]) == EXPORT_COLUMNS and rows[0]["participant_id"] == "exp"
    assert "runs/study/" in capsys.readouterr().err

    assert main(["study", "export", "--db", str(db), "--out", "-"]) == 0
    assert capsys.readouterr().out.startswith(",".join(EXPORT_COLUMNS))
