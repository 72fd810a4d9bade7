"""The Gradio wiring: every event named, the tab mounts inside another Blocks, the CLI commands."""

from __future__ import annotations

import csv
import io

import gradio as gr
import pytest
from study_helpers import changes_nothing, free_port

from model.cli import main
from model.config import QUALITY
from study.app import build_study_app, build_study_tab, consent_text, wants_admin
from study.db import make_engine
from study.http_client import StudyClient
from study.service import EXPORT_COLUMNS, StudyService

STUDY_EVENTS = {
    "study_consent",
    "study_start",
    "study_resume",
    "study_begin",
    "study_continue",
    "study_resync",
    "study_admin_panel",
    "study_admin_progress",
    "study_admin_export",
    *(f"study_answer_{e}" for e in ("neutral", "happy", "angry", "sad", "surprise")),
    *(f"study_rate_{q}" for q in QUALITY.levels),
}


def api_names(blocks: gr.Blocks) -> list[str | None]:
    return [d["api_name"] for d in blocks.get_config_file()["dependencies"]]


def test_every_event_has_an_api_name(study):
    names = api_names(build_study_app(study, admin_token="t"))
    assert None not in names and set(names) == STUDY_EVENTS


def test_experimenter_panel_only_with_admin_in_the_address():
    assert wants_admin("?admin") and wants_admin("admin=1") and wants_admin("?x=2&admin")
    assert not wants_admin("") and not wants_admin(None) and not wants_admin("?administrator")


def test_consent_says_how_long_this_study_is(study, tmp_path):
    # The fixture's set: 2 practice + 15 main + 2 catch pictures, 10 s each: about 3 minutes.
    assert "You will see 19 pictures; it takes about 3 minutes." in consent_text(study)
    empty = StudyService(make_engine(tmp_path / "empty.sqlite"))
    assert "It takes a few minutes." in consent_text(empty)


def test_tab_mounts_in_another_app(study):
    with pytest.raises(RuntimeError):
        build_study_tab(study, admin_token="t")
    with gr.Blocks() as demo:
        with gr.Tab("Compare"):
            gr.Markdown("the demo's own tab")
        tab = build_study_tab(study, admin_token="t")
    assert isinstance(tab, gr.Tab)
    assert STUDY_EVENTS <= set(api_names(demo))
    # Served for real: one rater's first trial through the mounted tab.
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True)
    try:
        client = StudyClient(demo.local_url)
        # A first visit to the tab (the demo's Study tab): the resume on load changes nothing
        # and fails nothing (it once failed on every fresh page, an "Error" badge over consent).
        first_visit = client.call("study_resume", {})
        assert changes_nothing(first_visit), first_visit
        client.start("mounted")
        screen = client.begin()
        assert screen.stage == "expression" and screen.trial_index == 0
        screen = client.answer(0, "neutral", 321.0)
        assert screen.stage == "quality"
    finally:
        demo.close()
    assert study.export_rows()[0]["rt_ms"] == 321.0


def test_cli_build_and_export(tmp_path, capsys):
    db, stim = tmp_path / "s.sqlite", tmp_path / "stim"
    code = main(
        [
            "study",
            "build",
            "--synthetic",
            "--methods",
            "telea,unmask",
            "--per-expression",
            "3",
            "--out",
            str(stim),
            "--db",
            str(db),
        ]
    )
    assert code == 0
    assert "conditions: telea, unmask, real" in capsys.readouterr().out
    service = StudyService(make_engine(db))
    info = service.start_session("cli", consent=True)
    view = service.next_trial(info.token)
    service.record_response(info.token, view.trial_index, "sad", 900)
    out = tmp_path / "export.csv"
    assert main(["study", "export", "--db", str(db), "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert tuple(rows[0]) == EXPORT_COLUMNS and rows[0]["participant_id"] == "cli"
    assert rows[0]["quality"] == ""  # not rated yet


def test_cli_serve_refuses_an_empty_database(tmp_path):
    assert main(["study", "serve", "--db", str(tmp_path / "empty.sqlite")]) == 2
