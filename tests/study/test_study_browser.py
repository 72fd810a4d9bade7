"""End to end in Debian's Chromium (Playwright): consent, code, practice, three trials, a reload
mid-session, a second tab finishing a picture, thank-you; the stored response times are
positive and plausible."""

from __future__ import annotations

import pytest
from study_helpers import StudyServer, make_study
from support import chromium_browser

pytestmark = [pytest.mark.browser, pytest.mark.server]

# Quotes, SQL and markup: must come back as the same text, never as markup or a dialog.
CODE = '<img src=y onerror=alert(1)>\'; DROP TABLE trials;--"q"<b>x</b>'
TIMEOUT_MS = 60_000


@pytest.fixture
def page():
    with chromium_browser() as browser:
        # A context of its own (not browser.new_page): a second tab shares its storage.
        page = browser.new_context(viewport={"width": 1000, "height": 1100}).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        yield page


def visible(page, selector: str) -> None:
    page.locator(selector).first.wait_for(state="visible")


def test_rater_flow_in_chromium(tmp_path, page):
    # One practice picture, then three: happy, sad and angry faces, no catch trial.
    service = make_study(
        tmp_path,
        methods=("telea",),
        per_expression=1,
        n_practice=1,
        n_catch=0,
        size=96,
        expressions=("happy", "sad", "angry"),
    )
    server = StudyServer(tmp_path / "study.sqlite", tmp_path / "server.log").start()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(server.url)
        visible(page, "#study-page-consent")
        page.locator("#study-agree input[type=checkbox]").check()
        page.click("#study-consent")
        visible(page, "#study-page-register")
        page.locator("#study-code textarea, #study-code input").first.fill(CODE)
        page.click("#study-start")
        visible(page, "#study-page-instructions")
        assert page.inner_text(".study-code") == CODE
        assert page.locator("#study-code-view b, #study-code-view img").count() == 0
        page.click("#study-begin")

        for index in range(4):
            if index == 2:
                # A reload mid-session resumes at the same unanswered picture.
                page.reload()
            img = f'img.study-stim-img[data-trial="{index}"]'
            visible(page, img)
            page.wait_for_function(
                f"() => window.__studyShown && window.__studyShown.trial === '{index}'"
            )
            label = "Practice 1 of 1" if index == 0 else f"Picture {index} of 3"
            assert label in page.inner_text("#study-progress")
            page.wait_for_timeout(250)  # the rater looks at the face
            if index == 1:
                page.screenshot(path=str(tmp_path / "study_trial.png"))
            if index == 3:
                # A second tab of the same browser resumes here and finishes this picture;
                # the first tab's click then offers to continue instead of storing anything.
                other = page.context.new_page()
                other.goto(server.url)
                visible(other, img)
                other.click("#study-expr-sad")
                visible(other, "#study-quality-row")
                other.click("#study-quality-2")
                visible(other, "#study-page-done")
                page.click("#study-expr-happy")
                visible(page, "#study-resync-row")
                assert page.locator("#study-stimulus img").is_hidden()
                page.click("#study-resync")
                break
            page.click("#study-expr-happy")
            visible(page, "#study-quality-row")
            page.click("#study-quality-5")
            if index == 0:
                visible(page, "#study-page-break")
                page.click("#study-continue")
        visible(page, "#study-page-done")
        assert "Thank you" in page.inner_text("#study-page-done")
        page.screenshot(path=str(tmp_path / "study_done.png"))
    finally:
        server.stop()

    assert not dialogs, "markup in the participant code ran"
    rows = service.export_rows()
    assert [r["trial_index"] for r in rows] == [0, 1, 2, 3]
    assert [r["is_practice"] for r in rows] == [1, 0, 0, 0]
    assert all(r["participant_id"] == CODE for r in rows)
    chosen = [(r["expression_chosen"], r["quality"]) for r in rows]
    assert chosen == [("happy", 5)] * 3 + [("sad", 2)]
    for r in rows:
        assert isinstance(r["rt_ms"], float) and 50 < r["rt_ms"] < 60_000, r
    (person,) = service.progress()
    assert person.completed and person.code == CODE
    assert "HeadlessChrome" in service_user_agent(service)
    assert (tmp_path / "study_done.png").stat().st_size > 0


def service_user_agent(service) -> str:
    from sqlalchemy import select

    from study.schema import Participant

    with service._read() as s:
        return s.scalar(select(Participant.user_agent)) or ""
