"""Online recruitment in Debian's Chromium (Playwright), against `unmask study serve`: a
platform's link on a phone-sized screen (390x844) from consent to the completion redirect, a
second visit by the same link on another browser resuming; the screen-out page for a small
screen and for a wrong attention check (with its redirect); the study behind a reverse proxy
under a path prefix (--root-path)."""

from __future__ import annotations

import http.server
import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from study_helpers import StudyServer, make_study
from support import chromium_browser, free_port

from study.schema import Participant, Stimulus, Trial

pytestmark = [pytest.mark.browser, pytest.mark.server]
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

TIMEOUT_MS = 60_000
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1000, "height": 1100}
AGREE = "I have read the above and agree to take part"
LINK = "/?PROLIFIC_PID={pid}&STUDY_ID=study-7&SESSION_ID=sess-{pid}"


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as browser:
        yield browser


def new_page(browser, viewport: dict, *, mobile: bool = False):
    context = browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return context, page


def visible(page, selector: str) -> None:
    page.locator(selector).first.wait_for(state="visible")


def truth(service, code: str) -> dict[int, tuple[bool, str]]:
    """trial index -> (is catch, true expression): what the test knows and the rater does not."""
    with service._read() as s:
        rows = s.execute(
            select(Trial.trial_index, Trial.is_catch, Stimulus.expression)
            .join(Participant, Participant.id == Trial.participant_id)
            .join(Stimulus, Stimulus.id == Trial.stimulus_id)
            .where(Participant.code == code)
        )
        return {i: (bool(c), e) for i, c, e in rows}


def current_index(page) -> int:
    img = page.locator("img.study-stim-img").first
    img.wait_for(state="visible")
    index = img.get_attribute("data-trial")
    page.wait_for_function(f"() => window.__studyShown && window.__studyShown.trial === '{index}'")
    return int(index)


def fits_the_phone(page, selector: str) -> None:
    """Every matched element lies inside the 390 px wide viewport; no sideways scrolling."""
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page is {width} px wide"
    for box in (el.bounding_box() for el in page.locator(selector).filter(visible=True).all()):
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, (selector, box)


def answer_trial(page, expression: str, quality: int = 5, *, phone: bool = False) -> int:
    index = current_index(page)
    if phone:
        fits_the_phone(page, "img.study-stim-img")
        fits_the_phone(page, "#study-expression-row button")
        assert page.locator("#study-expression-row button").filter(visible=True).count() == 5
    page.click(f"#study-expr-{expression}")
    visible(page, "#study-quality-row")
    if phone:
        fits_the_phone(page, "#study-quality-row button")
        assert page.locator("#study-quality-row button").filter(visible=True).count() == 7
    page.click(f"#study-quality-{quality}")
    # The reply has come when the stage leaves "quality" (next picture, break or end page).
    page.wait_for_function(
        "() => document.querySelector('#study-progress [data-study-stage]')"
        ".dataset.studyStage !== 'quality'"
    )
    return index


def test_link_on_a_phone_resume_elsewhere_and_completion_redirect(tmp_path, browser):
    service = make_study(
        tmp_path,
        methods=("telea",),
        per_expression=1,
        n_practice=1,
        n_catch=0,
        size=96,
        expressions=("happy", "sad", "angry"),
    )
    back = "http://127.0.0.1:{PORT}/study/health?cc={code}&pid={participant}&s={session}"
    server = StudyServer(
        tmp_path / "study.sqlite",
        tmp_path / "server.log",
        args=(
            "--completion-code",
            "C0MPLETE-42",
            "--completion-url",
            back,
            "--redirect-delay-ms",
            "1500",
            "--min-viewport",
            "360x600",
        ),
    ).start()
    link = server.url + LINK.format(pid="pp 1")
    try:
        context, page = new_page(browser, PHONE, mobile=True)
        page.goto(link)
        visible(page, "#study-page-consent")
        fits_the_phone(page, "#study-consent")
        page.get_by_label(AGREE).check()
        page.click("#study-consent")
        visible(page, "#study-page-register")
        assert "already carries your participant code" in page.inner_text("#study-code-intro")
        assert page.locator("#study-code textarea, #study-code input").count() == 0
        page.click("#study-start")
        visible(page, "#study-page-instructions")
        assert "came with the study link" in page.inner_text("#study-code-view")
        assert "pp 1" not in page.inner_text("body")  # the platform's id is never shown
        page.click("#study-begin")
        answer_trial(page, "happy", phone=True)  # the practice picture
        visible(page, "#study-page-break")
        page.click("#study-continue")
        first = answer_trial(page, "sad", 3, phone=True)
        page.screenshot(path=str(tmp_path / "phone_trial.png"), full_page=True)
        context.close()

        # The same link on another browser (nothing stored there): where they left off.
        context, page = new_page(browser, DESKTOP)
        page.goto(link)
        index = current_index(page)
        assert index == first + 1 and page.locator("#study-page-consent").is_hidden()
        while not page.locator("#study-page-done").is_visible():
            answer_trial(page, "angry", 6)
        visible(page, "#study-page-done")
        assert page.inner_text(".study-end-code") == "C0MPLETE-42"
        link_el = page.locator("a.study-end-link")
        assert link_el.is_visible()
        page.wait_for_url(lambda u: "/study/health?" in u, timeout=TIMEOUT_MS)
        query = parse_qs(urlsplit(page.url).query)
        assert query == {"cc": ["C0MPLETE-42"], "pid": ["pp 1"], "s": ["sess-pp 1"]}
        context.close()
        # A third visit after the end: the end page again, never a new start.
        context, page = new_page(browser, DESKTOP)
        page.goto(link)
        visible(page, "#study-page-done")
        context.close()
    finally:
        server.stop()

    rows = service.export_rows()
    assert len(rows) == 4 and {r["participant_id"] for r in rows} == {"pp 1"}
    assert {(r["recruitment_study_id"], r["recruitment_session_id"]) for r in rows} == {
        ("study-7", "sess-pp 1")
    }
    assert {(r["viewport_width"], r["viewport_height"]) for r in rows} == {(390, 844)}
    assert all(r["code_source"] == "url" and r["screened_out"] == "" for r in rows)
    assert all("Chrome" in r["user_agent"] for r in rows)
    (person,) = service.progress()
    assert person.completed


def test_screen_outs_small_screen_and_attention(tmp_path, browser):
    service = make_study(
        tmp_path, methods=("telea",), per_expression=1, n_practice=1, n_catch=1, size=96
    )
    server = StudyServer(
        tmp_path / "study.sqlite",
        tmp_path / "server.log",
        args=(
            "--min-viewport",
            "600x500",
            "--max-catch-failures",
            "1",
            "--screenout-code",
            "SCREENED-9",
            "--screenout-url",
            "http://127.0.0.1:{PORT}/study/health?out={participant}",
            "--redirect-delay-ms",
            "1500",
        ),
    ).start()
    try:
        # A phone below the minimum: the screen-out page before consent; nothing stored.
        context, page = new_page(browser, PHONE, mobile=True)
        page.goto(server.url + LINK.format(pid="small"))
        visible(page, "#study-page-screenout")
        assert "needs a larger screen" in page.inner_text("#study-progress")
        assert page.inner_text(".study-end-code") == "SCREENED-9"
        assert page.locator("#study-page-consent").is_hidden()
        fits_the_phone(page, "#study-progress")
        page.wait_for_url(lambda u: u.endswith("/study/health?out=small"), timeout=TIMEOUT_MS)
        context.close()
        assert service.progress() == []

        # A wrong answer to the attention check ends the session, here and on a reload.
        context, page = new_page(browser, DESKTOP)
        page.goto(server.url + LINK.format(pid="careless"))
        page.get_by_label(AGREE).check()
        page.click("#study-consent")
        page.click("#study-start")
        page.click("#study-begin")
        plan = truth(service, "careless")
        while True:
            index = current_index(page)
            is_catch, true = plan[index]
            if is_catch:
                page.click("#study-expr-neutral" if true != "neutral" else "#study-expr-sad")
                break
            answer_trial(page, true)
            if page.locator("#study-page-break").is_visible():
                page.click("#study-continue")
        visible(page, "#study-page-screenout")
        assert page.locator("#study-stimulus img").is_hidden()
        assert "check pictures" in page.inner_text("#study-progress")
        page.wait_for_url(lambda u: u.endswith("/study/health?out=careless"), timeout=TIMEOUT_MS)
        page.goto(server.url + LINK.format(pid="careless"))
        visible(page, "#study-page-screenout")
        context.close()
    finally:
        server.stop()
    rows = service.export_rows()
    assert {r["screened_out"] for r in rows} == {"attention"}
    assert rows[-1]["is_catch"] == 1 and rows[-1]["correct"] == 0
    log = server.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]


class PrefixProxy(http.server.ThreadingHTTPServer):
    """A reverse proxy as nginx would be configured in the README: /study/... -> upstream /..."""

    def __init__(self, upstream: str, prefix: str):
        self.upstream, self.prefix = upstream, prefix
        self.client = httpx.Client(timeout=60)
        super().__init__(("127.0.0.1", free_port()), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{self.prefix}/"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        proxy: PrefixProxy = self.server
        if not self.path.startswith(proxy.prefix + "/"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # As the README's nginx block: the public Host passes through, with X-Forwarded-*.
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        headers["X-Forwarded-Host"] = self.headers.get("Host", "")
        headers["X-Forwarded-Proto"] = "http"
        r = proxy.client.request(
            self.command,
            proxy.upstream + self.path[len(proxy.prefix) :],
            content=body,
            headers=headers,
        )
        data = r.content
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in (
                "content-length",
                "transfer-encoding",
                "connection",
                "content-encoding",
            ):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward


def test_behind_a_reverse_proxy_under_a_path_prefix(tmp_path, browser):
    service = make_study(
        tmp_path, methods=("telea",), per_expression=1, n_practice=1, n_catch=0, size=96
    )
    server = StudyServer(
        tmp_path / "study.sqlite", tmp_path / "server.log", args=("--root-path", "/study")
    ).start()
    proxy = PrefixProxy(server.url, "/study")
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        context, page = new_page(browser, DESKTOP)
        seen: list[str] = []
        page.on("request", lambda r: seen.append(r.url))
        page.goto(proxy.url + "?PROLIFIC_PID=behind-proxy")
        page.get_by_label(AGREE).check()
        page.click("#study-consent")
        page.click("#study-start")
        page.click("#study-begin")
        answer_trial(page, "happy")
        visible(page, "#study-page-break")
        context.close()
    finally:
        proxy.shutdown()
        proxy.client.close()
        server.stop()
    local = [u for u in seen if u.startswith("http://127.0.0.1")]
    assert local and all(u.startswith(proxy.url.rstrip("/")) for u in local), local[:5]
    rows = service.export_rows()
    assert [r["participant_id"] for r in rows] == ["behind-proxy"]
