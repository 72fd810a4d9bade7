"""The study service on a real SQLite file: sessions, idempotent answers, resume, export, constraints."""

from __future__ import annotations

import csv
import io
import threading
from collections import Counter

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from model.config import EXPRESSIONS, QUALITY
from study.db import database_url, make_engine
from study.schema import Participant, Response, Trial
from study.service import EXPORT_COLUMNS, STALE_MESSAGE, Stage, StudyError, StudyService

HOSTILE_CODES = [
    "'; DROP TABLE participants; --",
    'Robert"); DELETE FROM responses;--',
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "a\"b'c\\d & <b>bold</b> %s {0}",
]


def run_session(study: StudyService, token: str, expression: str = "happy", stop_after=None):
    """Answer every trial (or `stop_after` of them); returns {trial_index: (expression, quality)}."""
    given = {}
    while (view := study.next_trial(token)) is not None:
        if stop_after is not None and len(given) >= stop_after:
            break
        if view.stage == "expression":
            study.record_response(token, view.trial_index, expression, 500.0 + view.trial_index)
        quality = QUALITY.lowest + view.trial_index % len(QUALITY.levels)
        study.record_quality(token, view.trial_index, quality)
        given[view.trial_index] = (expression, quality)
    return given


def test_sqlite_pragmas(study):
    with study.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_database_url_env_overrides(monkeypatch, tmp_path):
    assert database_url(tmp_path / "x.sqlite") == f"sqlite:///{tmp_path / 'x.sqlite'}"
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert database_url(tmp_path / "x.sqlite") == "postgresql+psycopg://u@h/db"


def test_whole_session_and_export(study):
    info = study.start_session(
        "P01",
        consent=True,
        age_band="25-34",
        gender="female",
        vision_corrected="yes",
        user_agent="pytest",
    )
    assert (info.n_practice, info.n_trials) == (2, 2 + 15 + 2)
    given = run_session(study, info.token)
    assert len(given) == info.n_trials
    assert study.next_trial(info.token) is None

    text_csv = study.export_csv()
    rows = list(csv.DictReader(io.StringIO(text_csv)))
    assert tuple(rows[0].keys()) == EXPORT_COLUMNS
    assert [int(r["trial_index"]) for r in rows] == list(range(info.n_trials))
    for r in rows:
        assert r["participant_id"] == "P01"
        assert r["expression_chosen"] == "happy"
        assert r["correct"] == str(int(r["expression_true"] == "happy"))
        assert int(r["quality"]) == given[int(r["trial_index"])][1]
        assert float(r["rt_ms"]) == 500.0 + int(r["trial_index"])
        assert r["answered_at"].endswith("Z") and "T" in r["answered_at"]
        assert r["expression_true"] in EXPRESSIONS
    assert sum(r["is_practice"] == "1" for r in rows) == 2
    assert sum(r["is_catch"] == "1" for r in rows) == 2
    assert Counter(r["method"] for r in rows if r["is_practice"] == r["is_catch"] == "0") == {
        "telea": 5,
        "unmask": 5,
        "real": 5,
    }
    (p,) = study.progress()
    assert p.completed and p.n_rated == info.n_trials
    with study._read() as s:
        person = s.scalar(select(Participant))
        assert person.completed_at is not None and person.user_agent == "pytest"
        assert person.age_band == "25-34" and person.consent_at is not None


def test_double_answers_store_once(study):
    info = study.start_session("dbl", consent=True)
    view = study.next_trial(info.token)
    first = study.record_response(info.token, view.trial_index, "sad", 812.5)
    again = study.record_response(info.token, view.trial_index, "angry", 20.0)
    assert first.stored and not again.stored and again.value == "sad"
    assert study.record_quality(info.token, view.trial_index, 6).stored
    repeat = study.record_quality(info.token, view.trial_index, 2)
    assert not repeat.stored and repeat.value == 6
    rows = study.export_rows()
    assert len(rows) == 1 and rows[0]["expression_chosen"] == "sad" and rows[0]["quality"] == 6
    assert rows[0]["rt_ms"] == 812.5


def test_concurrent_double_clicks_store_once(study):
    """Many threads hammering the same trials at once: one stored answer each."""
    info = study.start_session("race", consent=True)
    for _ in range(4):
        view = study.next_trial(info.token)
        results = []

        def click(i, idx=view.trial_index, results=results):
            results.append(study.record_response(info.token, idx, EXPRESSIONS[i % 5], 300.0))

        threads = [threading.Thread(target=click, args=(i,)) for i in range(12)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sum(r.stored for r in results) == 1
        assert len({r.value for r in results}) == 1
        study.record_quality(info.token, view.trial_index, 4)
    with study._read() as s:
        assert s.scalar(select(text("count(*)")).select_from(Response)) == 4


def test_answers_only_for_the_current_shown_trial(study):
    info = study.start_session("order", consent=True)
    with pytest.raises(StudyError) as err:
        study.record_response(info.token, 0, "happy", 100)  # never shown
    assert err.value.reason == "not_current"
    view = study.next_trial(info.token)
    with pytest.raises(StudyError, match="not the one shown"):
        study.record_response(info.token, view.trial_index + 1, "happy", 100)
    with pytest.raises(StudyError) as err:
        study.record_quality(info.token, view.trial_index, 3)
    assert err.value.reason == "not_answered"
    with pytest.raises(StudyError):
        study.record_response(info.token, view.trial_index, "disgusted", 100)
    with pytest.raises(StudyError):
        study.record_response(info.token, 999, "happy", 100)
    study.record_response(info.token, view.trial_index, "happy", 100)
    for bad in (0, 8, "x"):
        with pytest.raises(StudyError):
            study.record_quality(info.token, view.trial_index, bad)


@pytest.mark.parametrize(
    "raw,stored",
    [
        (None, None),
        ("", None),
        (-5, None),
        (float("nan"), None),
        (float("inf"), None),
        ("731.25", 731.25),
        (1e9, None),
    ],
)
def test_rt_is_cleaned(study, raw, stored):
    info = study.start_session("rt", consent=True)
    view = study.next_trial(info.token)
    study.record_response(info.token, view.trial_index, "happy", raw)
    assert study.export_rows()[0]["rt_ms"] == ("" if stored is None else stored)


def test_resume_at_next_unanswered(tmp_path, study):
    info = study.start_session("resume-me", consent=True)
    run_session(study, info.token, stop_after=3)
    view = study.next_trial(info.token)
    study.record_response(info.token, view.trial_index, "neutral", 400)
    # A new process on the same file (a restarted server): same trial, now at the quality step.
    again = StudyService(make_engine(study.engine.url.database))
    assert again.resume(info.token).code == "resume-me"
    resumed = again.next_trial(info.token)
    assert (resumed.trial_index, resumed.stage) == (view.trial_index, "quality")
    again.record_quality(info.token, resumed.trial_index, 5)
    run_session(again, info.token)
    rows = again.export_rows()
    assert [r["trial_index"] for r in rows] == list(range(info.n_trials))
    with again._read() as s:
        shown = s.scalar(select(Trial.n_shown).where(Trial.trial_index == view.trial_index))
        assert shown == 2  # shown before and after the "crash"


def test_registration_rules(study):
    with pytest.raises(StudyError, match="consent"):
        study.start_session("x", consent=False)
    with pytest.raises(StudyError):
        study.start_session("   ", consent=True)
    with pytest.raises(StudyError):
        study.start_session("x" * 65, consent=True)
    with pytest.raises(StudyError):
        study.start_session("x", consent=True, age_band="12")
    info = study.start_session("taken", consent=True)
    with pytest.raises(StudyError) as err:
        study.start_session("taken", consent=True)
    assert err.value.reason == "code_taken"
    with pytest.raises(StudyError):
        study.start_session("taken", consent=True, resume_token="wrong")
    assert study.start_session("taken", consent=True, resume_token=info.token).resumed
    with pytest.raises(StudyError, match="session"):
        study.next_trial("not-a-token")


def test_round_robin_lists_under_threads(study):
    codes = [f"t{i}" for i in range(12)]
    threads = [
        threading.Thread(target=study.start_session, args=(c,), kwargs={"consent": True})
        for c in codes
    ]
    [t.start() for t in threads]
    [t.join() for t in threads]
    people = study.progress()
    assert sorted(p.code for p in people) == sorted(codes)
    assert Counter(p.list_index for p in people) == {0: 4, 1: 4, 2: 4}
    assert [r["participants"] for r in study.list_progress()] == [4, 4, 4]


def test_abandoned_sessions_do_not_hold_their_lists(study):
    """Three sessions quit before answering (lists 0, 1, 2); one on list 0 completes: the
    next two participants get lists 1 and 2, which still have no completed session."""
    for code in ("q0", "q1", "q2"):
        study.start_session(code, consent=True)
    done = study.start_session("d0", consent=True)
    run_session(study, done.token)
    lists = {p.code: p.list_index for p in study.progress()}
    assert [lists[c] for c in ("q0", "q1", "q2", "d0")] == [0, 1, 2, 0]
    for code in ("n1", "n2"):
        study.start_session(code, consent=True)
    lists = {p.code: p.list_index for p in study.progress()}
    assert (lists["n1"], lists["n2"]) == (1, 2)


@pytest.mark.parametrize("code", HOSTILE_CODES)
def test_hostile_codes_stored_verbatim(study, code):
    info = study.start_session(code, consent=True)
    run_session(study, info.token, stop_after=1)
    with study._read() as s:
        assert s.scalar(select(Participant.code)) == code
        # The tables are all still there.
        names = {r[0] for r in s.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
        assert {"participants", "trials", "responses", "stimuli"} <= names
    rows = list(csv.DictReader(io.StringIO(study.export_csv())))
    assert rows[0]["participant_id"] == code
    assert study.progress()[0].code == code


def test_constraints_guard_duplicates_in_the_database(study):
    """Even bypassing the service, the schema refuses a second answer or a repeated face."""
    info = study.start_session("raw", consent=True)
    view = study.next_trial(info.token)
    study.record_response(info.token, view.trial_index, "happy", 100)
    with study._read() as s:
        pid = s.scalar(select(Participant.id))
        trial = s.scalar(select(Trial).where(Trial.trial_index == view.trial_index))
        other = s.scalar(select(Trial).where(Trial.trial_index == view.trial_index + 1))
    with pytest.raises(IntegrityError), study.engine.begin() as c:
        c.execute(
            insert(Response).values(
                trial_id=trial.id,
                participant_id=pid,
                trial_index=view.trial_index,
                expression_chosen="sad",
                answered_at=text("CURRENT_TIMESTAMP"),
            )
        )
    with pytest.raises(IntegrityError), study.engine.begin() as c:
        c.execute(
            insert(Trial).values(
                participant_id=pid,
                trial_index=500,
                stimulus_id=other.stimulus_id,
                image_id=trial.image_id,
                is_practice=False,
                is_catch=False,
                n_shown=0,
            )
        )


def test_stimuli_locked_once_participants_exist(study, tmp_path):
    from study.stimuli import read_manifest

    rows = read_manifest(study.stimuli_dir)
    study.start_session("first", consent=True)
    with pytest.raises(StudyError, match="participants"):
        study.register_stimuli(rows, study.stimuli_dir)


def test_register_checks_files(tmp_path):
    from study.stimuli import build_synthetic_stimuli

    rows = build_synthetic_stimuli(tmp_path / "s")
    (tmp_path / "s" / rows[0].file).write_bytes(b"changed")
    service = StudyService(make_engine(tmp_path / "db.sqlite"))
    with pytest.raises(StudyError, match="sha256"):
        service.register_stimuli(rows, tmp_path / "s")


def test_screens_follow_the_flow(study):
    """The service picks every screen: instructions, practice, the break after the last
    practice rating, the main pictures, a stale click, the resume page, the end page."""
    assert study.landing_screen(None, "") is None  # a first visit: the page as served
    assert study.consent_screen(False).stage is Stage.CONSENT
    assert study.consent_screen(True).stage is Stage.REGISTER
    assert study.start_screen("", consent=True).stage is Stage.REGISTER  # with the problem
    screen = study.start_screen("flow", consent=True)
    info = screen.session
    assert screen.stage is Stage.INSTRUCTIONS and info.n_practice == 2
    assert study.landing_screen(info.token, "").stage is Stage.INSTRUCTIONS  # nothing answered
    screen = study.current_screen(info.token)
    assert (screen.stage, screen.trial.trial_index, screen.progress) == (
        Stage.EXPRESSION,
        0,
        "Practice 1 of 2",
    )
    for index in range(info.n_practice):
        screen = study.answer_screen(info.token, index, "happy", 500.0)
        assert screen.stage is Stage.QUALITY and screen.trial.trial_index == index
        screen = study.rating_screen(info.token, index, QUALITY.highest)
    assert screen.stage is Stage.BREAK and screen.trial.trial_index == info.n_practice
    assert screen.progress == ""  # no picture on the break page
    # A reload on the break page shows the break page again, without showing the next picture.
    again = study.landing_screen(info.token, "")
    assert again.stage is Stage.BREAK and again.trial.trial_index == info.n_practice
    assert not again.trial.shown
    screen = study.current_screen(info.token)
    assert screen.stage is Stage.EXPRESSION and screen.progress.startswith("Picture 1 of ")
    # A click for a picture already done (another window) stores nothing: a way back.
    stale = study.answer_screen(info.token, 0, "sad", 500.0)
    assert stale.stage is Stage.STALE and stale.message == STALE_MESSAGE
    refused = study.rating_screen(info.token, screen.trial.trial_index, QUALITY.highest + 1)
    assert refused.refused and refused.message.startswith("quality is from")
    # The page stays where it was: the same picture, still at its expression step.
    assert (refused.stage, refused.trial.trial_index) == (
        Stage.EXPRESSION,
        screen.trial.trial_index,
    )
    # A refused click from a page on another picture (out of date): STALE, its way back.
    ahead = study.rating_screen(info.token, screen.trial.trial_index + 1, QUALITY.highest)
    assert ahead.stage is Stage.STALE and not ahead.refused
    lost = study.rating_screen("no-such-token", screen.trial.trial_index, QUALITY.highest)
    assert lost.refused and lost.stage is None and lost.message.startswith("unknown session")
    resumed = study.landing_screen(info.token, "")  # past the break: the picture again
    assert resumed.stage is Stage.EXPRESSION and resumed.session.code == "flow"
    assert resumed.trial.trial_index == info.n_practice
    completed = {r["completed"] for r in study.export_rows() if r["participant_id"] == "flow"}
    assert completed == {0}  # still going
    while screen.stage is not Stage.DONE:
        index = screen.trial.trial_index
        study.answer_screen(info.token, index, "neutral", 400.0)
        screen = study.rating_screen(info.token, index, QUALITY.lowest)
    assert screen.trial is None and screen.end_code is None  # a lab study: no platform code
    assert study.landing_screen(info.token, "").stage is Stage.DONE
    assert {r["completed"] for r in study.export_rows() if r["participant_id"] == "flow"} == {1}
