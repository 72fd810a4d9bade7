"""End to end in Debian's Chromium (Playwright): consent, code, practice, three trials, a reload
mid-session, a second tab finishing a picture, thank-you; the stored response times are
positive and plausible. Twenty first visits in a row reach the consent form and start; every
refusal a person can cause reads in the page."""

from __future__ import annotations

import httpx
import pytest
from study_helpers import ADMIN_TOKEN, StudyServer, make_study
from support import chromium_browser

pytestmark = [pytest.mark.browser, pytest.mark.server]
expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

# Quotes, SQL and markup: must come back as the same text, never as markup or a dialog.
CODE = '<img src=y onerror=alert(1)>\'; DROP TABLE trials;--"q"<b>x</b>'
TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1000, "height": 1100}
AGREE = "I have read the above and agree to take part"


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as browser:
        yield browser


@pytest.fixture
def page(browser):
    # A context of its own (not browser.new_page): a second tab shares its storage.
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One study server for the first-visit and refusal tests."""
    folder = tmp_path_factory.mktemp("browser-served")
    service = make_study(folder, methods=("telea",), per_expression=1, n_practice=1, size=96)
    server = StudyServer(folder / "study.sqlite", folder / "server.log").start()
    yield service, server
    server.stop()


def visible(page, selector: str) -> None:
    page.locator(selector).first.wait_for(state="visible")


def open_first_visit(page, url: str) -> None:
    """Load the page and wait for the reply to its resume-on-load event (the one that once
    failed on every first visit): afterwards the page is as the rater will find it."""
    deps = httpx.get(f"{url}/config").raise_for_status().json()["dependencies"]
    (resume,) = [d["id"] for d in deps if d.get("api_name") == "study_resume"]

    def is_resume(response) -> bool:
        request = response.request
        return (
            "/gradio_api/run/predict" in response.url
            and request.method == "POST"
            and (request.post_data_json or {}).get("fn_index") == resume
        )

    with page.expect_response(is_resume) as reply:
        page.goto(url)
    assert reply.value.status == 200, reply.value.text()
    assert "error" not in reply.value.json(), reply.value.text()


def assert_no_error_shown(page) -> None:
    """No Gradio error anywhere on the page: no red 'Error' badge, no toast."""
    assert page.get_by_text("Error", exact=True).filter(visible=True).count() == 0
    toasts = page.locator(".toast-body").filter(visible=True)
    assert toasts.count() == 0, toasts.all_inner_texts()


def server_log_is_clean(server) -> None:
    log = server.log_path.read_text()
    assert "Traceback" not in log and "Error" not in log, log[-3000:]


def test_twenty_first_visits_reach_consent_and_start(served, browser):
    """A fresh browser (nothing stored) sees the consent form, readable and clickable, and
    starts: 20 times in a row. The resume-on-load event once failed on first visits, and its
    "Error" badge covered the form (5 of 6 visits), a race this test waits out: each visit
    waits for that event's reply before it looks and clicks."""
    service, server = served
    for i in range(20):
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            open_first_visit(page, server.url)
            visible(page, "#study-page-consent")
            assert "This study asks how people perceive faces" in page.inner_text(
                "#study-page-consent"
            )
            agree = page.get_by_label(AGREE)
            assert agree.is_visible() and not agree.is_checked()
            agree.check()
            page.click("#study-consent")
            visible(page, "#study-page-register")
            page.locator("#study-code textarea, #study-code input").first.fill(f"first-{i:02d}")
            page.click("#study-start")
            visible(page, "#study-page-instructions")
            assert page.inner_text(".study-code") == f"first-{i:02d}"
            assert page.locator("#study-page-consent").is_hidden()
            assert_no_error_shown(page)
        finally:
            context.close()
    started = sorted(p.code for p in service.progress() if p.code.startswith("first-"))
    assert started == [f"first-{i:02d}" for i in range(20)]
    server_log_is_clean(server)


def test_refusals_read_in_the_page(served, page):
    """Each refusal a rater or the experimenter can cause shows its words on the page (no bare
    red badge): consent not ticked, no code, a code taken, and a wrong admin token for both
    the progress view and the export (the server once raised it as a bare 'Error')."""
    service, server = served
    service.start_session("taken", consent=True)
    open_first_visit(page, server.url)
    page.click("#study-consent")
    message = page.locator("#study-consent-message")
    message.get_by_text("Please tick the box to take part.").wait_for()
    page.get_by_label(AGREE).check()
    page.click("#study-consent")
    visible(page, "#study-page-register")
    code = page.locator("#study-code textarea, #study-code input").first
    register = page.locator("#study-register-message")
    page.click("#study-start")
    register.get_by_text("please enter a participant code").wait_for()
    code.fill("taken")
    page.click("#study-start")
    register.get_by_text("this code is already in use").wait_for()
    assert page.locator("#study-page-register").is_visible()
    assert page.locator("#study-admin").count() == 0 or page.locator("#study-admin").is_hidden()

    page.goto(f"{server.url}/?admin")  # the experimenter's address
    page.get_by_text("Experimenter").click()
    token = page.locator("#study-admin-token input")
    admin = page.locator("#study-admin-message")
    token.fill("wrong-token")
    page.click("#study-admin-progress")
    admin.get_by_text("Invalid admin token.").wait_for()
    assert admin.is_visible() and admin.inner_text() == "Invalid admin token."
    token.fill(ADMIN_TOKEN)
    page.click("#study-admin-progress")
    admin.get_by_text("participants, 0 completed.").wait_for()
    table = page.locator("#study-admin-participants")
    people = table.get_by_text("taken", exact=True).filter(visible=True)
    people.first.wait_for()  # the progress table shows the participant
    token.fill("")
    page.click("#study-admin-export")
    admin.get_by_text("Invalid admin token.").wait_for()
    assert people.first.is_visible()  # the export was refused; the table shown before stays
    token.fill(ADMIN_TOKEN)
    page.click("#study-admin-export")
    admin.get_by_text("Export ready").wait_for()
    page.locator('#study-admin-file a[download="study_export.csv"]').wait_for()
    token.fill("wrong-again")
    page.click("#study-admin-progress")
    admin.get_by_text("Invalid admin token.").wait_for()
    expect(people).to_have_count(0)  # the progress view refused: its table emptied
    assert_no_error_shown(page)
    page.screenshot(path=str(server.log_path.parent / "refusals.png"), full_page=True)
    server_log_is_clean(server)


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
                other.wait_for_function(
                    f"() => window.__studyShown && window.__studyShown.trial === '{index}'"
                )
                other.wait_for_timeout(250)  # this tab's rater looks at the face too
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
