"""Through the real HTTP API of a launched `unmask study serve`: 30 raters at once, admin token,
hostile participant codes, no method names reaching a rater."""

from __future__ import annotations

import csv
import html
import io
import random
import re
import threading
from collections import Counter

import httpx
import pytest
from study_helpers import (
    ADMIN_TOKEN,
    StudyServer,
    changes_nothing,
    complete_session,
    is_skip,
    make_study,
)

from model.config import EXPRESSIONS, QUALITY
from study.http_client import StudyClient, StudyHTTPError
from study.service import EXPORT_COLUMNS

pytestmark = pytest.mark.server
N_RATERS = 30


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    # 2 conditions (telea, real) x 2 faces per expression = 10 main + 1 practice + 1 catch.
    service = make_study(folder, methods=("telea",), per_expression=2, n_practice=1, n_catch=1)
    server = StudyServer(folder / "study.sqlite", folder / "server.log").start()
    yield service, server
    server.stop()


def test_thirty_concurrent_raters_every_answer_once(served):
    service, server = served
    results: dict[str, dict] = {}
    errors: list[BaseException] = []

    def rater(i: int) -> None:
        try:
            results[f"rater-{i:02d}"] = complete_session(
                server.url, f"rater-{i:02d}", random.Random(i)
            )
        except BaseException as exc:  # reported below with the rater's id
            errors.append(exc)

    threads = [threading.Thread(target=rater, args=(i,)) for i in range(N_RATERS)]
    [t.start() for t in threads]
    [t.join(timeout=600) for t in threads]
    assert not errors, errors[:3]
    assert len(results) == N_RATERS

    rows = [r for r in service.export_rows() if r["participant_id"].startswith("rater-")]
    keys = [(r["participant_id"], r["trial_index"]) for r in rows]
    assert len(keys) == len(set(keys)), "a response was stored twice"
    for code, given in results.items():
        mine = {r["trial_index"]: r for r in rows if r["participant_id"] == code}
        assert sorted(mine) == list(range(12)), f"{code}: lost responses"
        for index, (expression, quality, rt) in given.items():
            assert mine[index]["expression_chosen"] == expression
            assert mine[index]["quality"] == quality
            assert mine[index]["rt_ms"] == pytest.approx(rt, abs=1e-3)
    people = [p for p in service.progress() if p.code.startswith("rater-")]
    assert all(p.completed for p in people)
    assert Counter(p.list_index for p in people) == {0: N_RATERS // 2, 1: N_RATERS // 2}


NO_SESSION = "no session: start from the beginning"
NOT_A_TRIAL = "the trial index is a whole number"
ADMIN_EVENTS = ("study_admin_progress", "study_admin_export")


def test_every_event_answers_a_blank_fresh_session(served):
    """Every event, called as a first visit would (no session, empty inputs), answers with its
    outputs filled (no Gradio error, which a page shows as a red 'Error' badge) and, where it
    refuses, with words for the page; the server logs no traceback. The first-visit resume
    once failed with "didn't return enough output values" on every fresh page."""
    service, server = served
    log_start = len(server.log_path.read_text())
    client = StudyClient(server.url)
    expected = {
        "study_consent": {"study-consent-message": "Please tick the box to take part."},
        "study_start": {"study-register-message": "**consent is needed to take part**"},
        **{name: NO_SESSION for name in ("study_begin", "study_continue", "study_resync")},
        **{f"study_answer_{e}": NOT_A_TRIAL for e in EXPRESSIONS},
        **{f"study_rate_{q}": NOT_A_TRIAL for q in QUALITY.levels},
    }
    assert set(client._deps) == {*expected, "study_resume", "study_admin_panel", *ADMIN_EVENTS}
    for name, want in expected.items():
        out = client.call(name)
        if isinstance(want, dict):
            assert {k: out[k] for k in want} == want, name
        else:
            assert client._screen(out).message == want, name
    # A first visit (nothing stored in the browser): nothing on the page changes.
    out = client.call("study_resume", {})
    assert changes_nothing(out), out
    assert client.resume(None).stage is None
    # The experimenter panel: shown only at the address with ?admin.
    assert client.call("study_admin_panel", "")["study-admin"]["visible"] is False
    assert client.call("study_admin_panel", "?admin")["study-admin"]["visible"] is True
    # A session this database does not know: the browser's copy is cleared, the page stays.
    out = client.call("study_resume", {"token": "not-a-session"})
    assert out["browserstate"] == {} and is_skip(out["study-page-consent"])
    for name in ADMIN_EVENTS:
        with pytest.raises(StudyHTTPError, match="Invalid admin token"):
            client._admin(name, "")
    log = server.log_path.read_text()[log_start:]
    assert "Traceback" not in log and "Error" not in log, log[-2000:]


def test_admin_refused_without_token(served):
    service, server = served
    for headers in ({}, {"X-Study-Token": "wrong"}, {"Authorization": "Bearer nope"}):
        for route in (
            "/study/admin/export.csv",
            "/study/admin/progress.json",
            "/study/admin/timings.json",
        ):
            r = httpx.get(server.url + route, headers=headers)
            assert r.status_code == 401, route
            assert "participant_id" not in r.text
    client = StudyClient(server.url)
    for bad in ("", "wrong", ADMIN_TOKEN[:-1], None):
        with pytest.raises(StudyHTTPError, match="Invalid admin token"):
            client.admin_export(bad)
        with pytest.raises(StudyHTTPError, match="Invalid admin token"):
            client.admin_progress(bad)

    ok = httpx.get(server.url + "/study/admin/export.csv", headers={"X-Study-Token": ADMIN_TOKEN})
    assert ok.status_code == 200
    assert ok.text.splitlines()[0].split(",") == list(EXPORT_COLUMNS)
    bearer = httpx.get(
        server.url + "/study/admin/progress.json",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert bearer.status_code == 200 and "participants" in bearer.json()
    out = client.admin_progress(ADMIN_TOKEN)
    assert "participants" in str(out)
    exported = client.admin_export(ADMIN_TOKEN)
    assert any(isinstance(v, dict) and "study_export" in str(v) for v in exported.values())


def test_rater_never_sees_method_or_stimulus_ids(served):
    service, server = served
    config = httpx.get(server.url + "/config").text
    client = StudyClient(server.url)
    client.start("peek")
    screen = client.begin()
    seen = []
    while not (screen := client.past_break(screen)).done and len(seen) < 6:
        seen.append(screen.html)
        index = screen.trial_index
        client.answer(index, "happy", 500)
        screen = client.rate(index, 4)
    secrets_ = {r.stimulus_id for r in service.stimulus_refs()}
    secrets_ |= {r.image_id for r in service.stimulus_refs()}
    for page in [config, *seen]:
        visible = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
        for word in ("telea", "unmask", "images/", *secrets_):
            assert word not in visible, word
    assert all("data:image/png;base64," in h for h in seen)


@pytest.mark.parametrize(
    "code",
    ["'; DROP TABLE participants; --", "<script>alert(1)</script>", '<b onmouseover=x>"q"</b>'],
)
def test_hostile_codes_stored_and_shown_harmlessly(served, code):
    service, server = served
    client = StudyClient(server.url)
    out = client.start(code)
    shown = out["study-code-view"]
    assert html.escape(code) in shown and "<script>" not in shown and "<b " not in shown
    screen = client.begin()
    client.answer(screen.trial_index, "sad", 700)
    client.rate(screen.trial_index, 2)
    # The same client-supplied text again: refused as taken, not matched as SQL.
    with pytest.raises(StudyHTTPError):
        StudyClient(server.url).start(code)
    r = httpx.get(server.url + "/study/admin/export.csv", headers={"X-Study-Token": ADMIN_TOKEN})
    rows = [row for row in csv.DictReader(io.StringIO(r.text)) if row["participant_id"] == code]
    assert len(rows) == 1 and rows[0]["expression_chosen"] == "sad"
    assert code in [p.code for p in service.progress()]


def test_stale_click_offers_the_current_trial(served):
    """Two windows on one session: a click on a picture the other window already finished
    stores nothing new and offers a button (study_resync) to the current picture."""
    service, server = served
    first = StudyClient(server.url)
    first.start("two-windows")
    screen = first.begin()  # the practice picture, then the break, then picture 1
    first.answer(screen.trial_index, "happy", 700.0)
    assert first.rate(screen.trial_index, 4).at_break
    screen = first.next()
    second = StudyClient(server.url)
    assert second.resume(first.token).trial_index == screen.trial_index
    index = screen.trial_index
    first.answer(index, "sad", 800.0)
    first.rate(index, 6)
    late = second.answer(index, "happy", 900.0)
    assert late.stale and late.message.startswith("This picture was already answered")
    current = second.resync()
    assert current.stage == "expression" and current.trial_index > index
    rows = [r for r in service.export_rows() if r["participant_id"] == "two-windows"]
    assert [(r["expression_chosen"], r["quality"], r["rt_ms"]) for r in rows] == [
        ("happy", 4, 700.0),
        ("sad", 6, 800.0),
    ]


def test_malformed_requests_get_a_message_and_store_nothing(served):
    service, server = served
    client = StudyClient(server.url)
    client.start("malformed")
    screen = client.begin()
    # No such trial: refused with a message, the current picture kept at its step.
    for index in (None, 1e20, -5, 10_000):
        out = client._screen(client.call("study_answer_happy", index, 500))
        assert out.refused and out.message and out.stage == "expression", (index, out)
        assert out.trial_index == screen.trial_index, (index, out)
        out = client._screen(client.call("study_rate_4", index))
        assert out.refused and out.message and out.stage == "expression", (index, out)
        assert out.html == "", (index, out)  # the picture is left as it is, not sent again
    # A real trial that is not the one on screen: nothing stored, a way back to the current one.
    assert client.answer(screen.trial_index + 7, "happy", 500).stale
    assert client.resync().trial_index == screen.trial_index
    # Gradio refuses a non-number for a Number input itself, with its own message.
    with pytest.raises(StudyHTTPError, match="preprocess"):
        client.call("study_answer_happy", "abc", 500)
    assert not [r for r in service.export_rows() if r["participant_id"] == "malformed"]
    # A clock the browser got wrong is stored as missing, not refused; the session goes on.
    assert client.answer(screen.trial_index, "sad", -3.0).stage == "quality"
    client.rate(screen.trial_index, 3)
    (row,) = [r for r in service.export_rows() if r["participant_id"] == "malformed"]
    assert (row["expression_chosen"], row["quality"], row["rt_ms"]) == ("sad", 3, "")
