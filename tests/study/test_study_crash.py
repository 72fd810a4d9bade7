"""Crash and resume: SIGKILL the server mid-session, restart it on the same SQLite file, finish;
the export is complete and nothing is counted twice."""

from __future__ import annotations

import pytest
from study_helpers import StudyServer, make_study

from study.http_client import StudyClient

pytestmark = pytest.mark.server


def test_kill_restart_resume_finish(tmp_path):
    service = make_study(tmp_path, methods=("telea",), per_expression=2, n_practice=1, n_catch=1)
    db = tmp_path / "study.sqlite"
    server = StudyServer(db, tmp_path / "server.log").start()
    raters = {}
    # Three raters left in three different places: mid-practice at the quality step, at an
    # image (expression not yet given), and just after an expression answer.
    plans = {"crash-a": (0, "quality"), "crash-b": (4, "expression"), "crash-c": (7, "quality")}
    given: dict[str, dict[int, tuple[str, int]]] = {code: {} for code in plans}
    try:
        for code, (stop_index, stop_stage) in plans.items():
            client = StudyClient(server.url)
            client.start(code)
            screen = client.begin()
            while True:
                screen = client.past_break(screen)
                index = screen.trial_index
                if index == stop_index and stop_stage == "expression":
                    break
                client.answer(index, "angry", 650.0)
                given[code][index] = ("angry", None)
                if index == stop_index:
                    break
                screen = client.rate(index, 3)
                given[code][index] = ("angry", 3)
            raters[code] = client.token
    finally:
        server.kill()  # SIGKILL: no shutdown hooks, as in a crash

    server = StudyServer(db, tmp_path / "server.log").start()
    try:
        for code, token in raters.items():
            stop_index, stop_stage = plans[code]
            client = StudyClient(server.url)  # a new page: only the browser-kept token survives
            screen = client.resume(token)
            assert (screen.trial_index, screen.stage) == (stop_index, stop_stage), code
            while not (screen := client.past_break(screen)).done:
                index = screen.trial_index
                if screen.stage == "expression":
                    # A retried request from before the crash must not add a row either.
                    client.answer(index, "neutral", 480.0)
                    client.answer(index, "neutral", 480.0)
                    given[code][index] = ("neutral", None)
                screen = client.rate(index, 6)
                expression, quality = given[code][index]
                given[code][index] = (expression, quality or 6)
    finally:
        server.stop()

    rows = service.export_rows()
    keys = [(r["participant_id"], r["trial_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 3 * 12
    for r in rows:
        expression, quality = given[r["participant_id"]][r["trial_index"]]
        assert (r["expression_chosen"], r["quality"]) == (expression, quality)
    assert all(p.completed for p in service.progress())
