"""Online recruitment in the service, on a real SQLite file: link ids, one participation per
code (a second visit resumes), the attention-check screen-out, the small-screen refusal, focus
and blur events, the export's new columns (after docs/DESIGN.md's), and an older database upgraded."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text
from study_helpers import make_study

from study.db import make_engine
from study.schema import Participant, Stimulus, Trial
from study.service import (
    EXPORT_COLUMNS,
    ClientInfo,
    OnlineConfig,
    RecruitmentIds,
    ScreenOut,
    StudyError,
    StudyService,
    TrialView,
)

DESIGN_COLUMNS = (
    "participant_id trial_index stimulus_id image_id method expression_true expression_chosen "
    "correct quality rt_ms is_practice is_catch answered_at"
).split()
LINK = "?PROLIFIC_PID=5f0c9a&STUDY_ID=st-1&SESSION_ID=se%202&other=x"


def truth(service: StudyService, code: str) -> dict[int, tuple[bool, str]]:
    """trial index -> (is catch, true expression) of a participant (what the rater never sees)."""
    with service._read() as s:
        rows = s.execute(
            select(Trial.trial_index, Trial.is_catch, Stimulus.expression)
            .join(Participant, Participant.id == Trial.participant_id)
            .join(Stimulus, Stimulus.id == Trial.stimulus_id)
            .where(Participant.code == code)
        )
        return {i: (bool(c), e) for i, c, e in rows}


def test_link_ids_and_end_links():
    cfg = OnlineConfig(
        participant_param="pid",
        study_param="sid",
        session_param="ses",
        completion_code="C0DE",
        completion_url="https://platform.example/done?cc={code}&p={participant}&s={session}",
    )
    assert cfg.ids_from_query("?pid=a b&sid=s1&ses=x/y") == RecruitmentIds("a b", "s1", "x/y")
    assert cfg.ids_from_query("?PROLIFIC_PID=a") is None  # not this study's parameter name
    assert cfg.ids_from_query("") is None and cfg.ids_from_query("?pid=") is None
    code, url = cfg.end_link("complete", RecruitmentIds("a b", "s1", "x/y"))
    assert code == "C0DE"
    assert url == "https://platform.example/done?cc=C0DE&p=a%20b&s=x%2Fy"
    assert cfg.end_link("screenout", None) == (None, None)
    small = OnlineConfig(min_width=360, min_height=600)
    assert small.screen_too_small(ClientInfo(390, 500))
    assert not small.screen_too_small(ClientInfo(390, 844))
    assert not small.screen_too_small(ClientInfo())  # unknown sizes pass
    assert ClientInfo.from_json('{"vw": 390, "vh": "844", "dpr": 3, "sw": -1}') == ClientInfo(
        390, 844, None, None, 3.0
    )
    assert ClientInfo.from_json("not json") == ClientInfo()


def test_link_code_stored_and_second_visit_resumes(study):
    ids = OnlineConfig().ids_from_query(LINK)
    assert ids == RecruitmentIds("5f0c9a", "st-1", "se 2")
    client = ClientInfo(1280, 720, 1920, 1080, 1.5)
    first = study.start_session("ignored", consent=True, ids=ids, client=client, user_agent="UA/1")
    assert (first.code, first.code_source, first.resumed) == ("5f0c9a", "url", False)
    view = study.next_trial(first.token)
    study.answer(first.token, view.trial_index, "happy", 800.0)
    study.rate_and_advance(first.token, view.trial_index, 4)

    # Another browser, the same link: the same participant, where they left off.
    again = study.start_session("", consent=True, ids=ids)
    assert again.resumed and again.code == "5f0c9a" and again.token != first.token
    assert study.next_trial(again.token).trial_index == view.trial_index + 1
    assert [p.code for p in study.progress()] == ["5f0c9a"]
    # A typed code equal to a link's is not a way in.
    with pytest.raises(StudyError, match="already in use"):
        study.start_session("5f0c9a", consent=True)

    (row,) = study.export_rows()
    assert list(row)[: len(DESIGN_COLUMNS)] == DESIGN_COLUMNS
    assert tuple(row) == EXPORT_COLUMNS
    assert row["participant_id"] == "5f0c9a" and row["code_source"] == "url"
    assert (row["recruitment_study_id"], row["recruitment_session_id"]) == ("st-1", "se 2")
    assert (row["viewport_width"], row["viewport_height"]) == (1280, 720)
    assert (row["screen_width"], row["screen_height"], row["device_pixel_ratio"]) == (
        1920,
        1080,
        1.5,
    )
    assert row["user_agent"] == "UA/1" and row["screened_out"] == "" and row["n_blur"] == 0
    header = study.export_csv().splitlines()[0].split(",")
    assert header[: len(DESIGN_COLUMNS)] == DESIGN_COLUMNS


def test_small_screen_refused_before_anything_is_stored(study):
    study.online = OnlineConfig(min_width=600, min_height=500)
    with pytest.raises(StudyError) as err:
        study.start_session("phone", consent=True, client=ClientInfo(390, 844))
    assert err.value.reason == "small_screen"
    assert study.progress() == []
    assert study.start_session("laptop", consent=True, client=ClientInfo(1280, 720)).code


def test_wrong_catch_answer_screens_out(study):
    study.online = OnlineConfig(max_catch_failures=1)
    info = study.start_session("careless", consent=True)
    plan = truth(study, "careless")
    wrong = {"happy": "sad"}
    view = study.next_trial(info.token)
    while isinstance(view, TrialView):
        is_catch, true = plan[view.trial_index]
        chosen = wrong.get(true, "happy") if is_catch else true
        outcome, after = study.answer(info.token, view.trial_index, chosen, 500.0)
        assert outcome.stored
        if is_catch:
            assert isinstance(after, ScreenOut) and after.reason == "attention"
            break
        study.rate_and_advance(info.token, view.trial_index, 5)
        view = study.next_trial(info.token)  # (past the practice break too)
    else:
        pytest.fail("no catch trial reached")
    assert isinstance(study.next_trial(info.token), ScreenOut)  # a reload: still ended
    with pytest.raises(StudyError) as err:  # nothing more is stored
        study.answer(info.token, view.trial_index + 1, "happy", 500.0)
    assert err.value.reason == "screened_out"
    rows = study.export_rows()
    assert {r["screened_out"] for r in rows} == {"attention"}
    assert rows[-1]["is_catch"] == 1 and rows[-1]["correct"] == 0


def test_focus_and_blur_events_counted_per_trial(study):
    info = study.start_session("wanders", consent=True)
    view = study.next_trial(info.token)
    i = view.trial_index
    events = json.dumps(
        [
            {"kind": "blur", "trial": str(i), "t": 1200.5},
            {"kind": "focus", "trial": str(i), "t": 1900},
            {"kind": "hidden", "trial": None, "t": 10},
            {"kind": "<script>", "trial": 1},
        ]
    )
    study.answer(info.token, view.trial_index, "sad", 700.0, events=events)
    study.answer(info.token, view.trial_index, "sad", 700.0, events=events)  # a repeat: not again
    study.answer(info.token, view.trial_index, "sad", 700.0, events="not json")
    (row,) = study.export_rows()
    assert row["n_blur"] == 1
    # Events while the quality scale is up (the last trial's too) go with the rating, once.
    later = json.dumps([{"kind": "hidden", "trial": str(i), "t": 2500}])
    study.rate_and_advance(info.token, i, 4, events=later)
    study.rate_and_advance(info.token, i, 4, events=later)  # a repeat: not again
    (row,) = study.export_rows()
    assert row["n_blur"] == 2
    with study._read() as s:
        kinds = [k for (k,) in s.execute(text("SELECT kind FROM browser_events ORDER BY id"))]
    assert kinds == ["blur", "focus", "hidden", "hidden"]


def test_older_database_gains_the_new_columns(tmp_path):
    service = make_study(tmp_path, methods=("telea",), per_expression=1, n_practice=1, n_catch=0)
    service.start_session("before", consent=True)
    with service.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE participants DROP COLUMN screen_out_reason")
        conn.exec_driver_sql("ALTER TABLE participants DROP COLUMN viewport_width")
    service.engine.dispose()
    upgraded = StudyService(make_engine(tmp_path / "study.sqlite"))
    assert [p.code for p in upgraded.progress()] == ["before"]
    with upgraded._read() as s:
        names = {r[1] for r in s.execute(text("PRAGMA table_info(participants)"))}
    assert {"screen_out_reason", "viewport_width"} <= names
