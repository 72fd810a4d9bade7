"""The rater's Gradio app: consent, code, instructions, practice, timed trials, thank-you; admin behind a token.

Layout and event wiring only: the service decides which Screen follows each event
(StudyService.*_screen) and the handlers here lay that Screen out. Response times are measured in the browser (performance.now() from the frame that paints the image to the
expression click) and sent with the click. Images travel as data URIs with no name, id or method.
"""

from __future__ import annotations

import base64
import html
import os
import secrets
import shutil
import sys
import tempfile
from functools import lru_cache, partial
from pathlib import Path
from urllib.parse import parse_qs

import gradio as gr

from model.config import EXPRESSIONS, QUALITY, set_offline_env
from study.service import (
    AGE_BANDS,
    GENDERS,
    VISION,
    ClientInfo,
    RecruitmentIds,
    Screen,
    Stage,
    StudyError,
    StudyService,
    TrialView,
    require_admin_token,
)

TOKEN_ENV = "UNMASK_STUDY_TOKEN"
STORAGE_KEY = "face-study-session"

CONSENT = """
## Consent
This study asks how people perceive faces in pictures. You will see photographs of faces, one at
a time; for each, choose the expression you see and rate the picture's quality.

- {length} Taking part is voluntary; you may stop at any time.
- We store a code you choose (not your name), your answers and response times, and, only if you
  give them, your age band, gender and whether you wear glasses or lenses.
- Results are reported only in aggregate, and used for research only.
"""
SECONDS_PER_PICTURE = 10  # an estimate for the consent page: an expression click and a rating


def consent_text(service: StudyService) -> str:
    """The consent page, saying how many pictures this study's sessions have and about how long
    that takes (SECONDS_PER_PICTURE each)."""
    refs = service.stimulus_refs()
    if not refs:
        return CONSENT.format(length="It takes a few minutes.")
    from study import design

    try:
        n = len(design.participant_sequence(refs, 0, 0))
    except design.DesignError:  # registration says what is wrong with the set
        return CONSENT.format(length="It takes a few minutes.")
    minutes = max(1, round(n * SECONDS_PER_PICTURE / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return CONSENT.format(length=f"You will see {n} pictures; it takes about {minutes} {unit}.")


_Q = QUALITY
INSTRUCTIONS = f"""
## Instructions
A face appears in the middle of the screen. **Click the expression you see** (neutral, happy,
angry, sad or surprise) as quickly as you can while staying accurate: your response time is
measured. Then **rate the picture's quality** from {_Q.lowest} ({_Q.lowest_word}) to \
{_Q.highest} ({_Q.highest_word}): does it look like a natural, undamaged photograph? Some
pictures were retouched by computer programs.

You start with a few practice pictures that do not count.
"""
BREAK = """
## Practice done
The real trials start now. Same task: click the expression first, as quickly and accurately as
you can, then rate the quality.
"""
DONE = """
## Thank you!
Your answers have been saved. You may close this page.
"""
PROGRESS_HEADERS = ["code", "list", "answered", "rated", "trials", "started", "last answer", "done"]
LIST_HEADERS = ["list", "participants", "completed"]
# The trial page's blocks and the stage of the Screen (on the status line) that shows each:
# page changes during trials are CSS on one small value, never component updates (below).
STAGE_BLOCKS = {
    Stage.EXPRESSION: "study-expression-row",
    Stage.QUALITY: "study-quality-row",
    Stage.BREAK: "study-page-break",
    Stage.STALE: "study-resync-row",
    Stage.DONE: "study-page-done",
    Stage.SCREENOUT: "study-page-screenout",
}
STAGE_CSS = (
    "".join(
        f'#study-page-trial:not(:has([data-study-stage="{stage}"])) #{block}'
        " {display: none !important;}"
        for stage, block in STAGE_BLOCKS.items()
    )
    + "".join(
        f'#study-page-trial:has([data-study-stage="{stage}"]) #study-stimulus'
        " {display: none !important;}"
        for stage in (Stage.STALE, Stage.SCREENOUT)
    )
    # A phone (390 px wide) shows the whole picture and every button without sideways scrolling.
    + "@media (max-width: 480px) {"
    "img.study-stim-img {width: min(256px, 100%) !important; height: auto !important;}"
    "#study-expression-row button, #study-quality-row button"
    " {min-width: 0 !important; padding-left: 2px !important; padding-right: 2px !important;"
    " font-size: 0.8rem !important;}"
    "#study-expression-row .row, #study-quality-row .row {flex-wrap: wrap; gap: 6px;}"
    "}"
)
LINK_CODE = "The study link already carries your participant code: nothing to type here."

# Runs once when the image component mounts, and again after each new value is rendered: the
# frame in which the new image is painted is taken as the time it was shown.
JS_STAMP_SHOWN = """
const mark = () => {
  const img = element.querySelector('img.study-stim-img');
  if (!img) return;
  const trial = img.dataset.trial;
  const stamp = () => requestAnimationFrame((t) => { window.__studyShown = {trial: trial, t: t}; });
  if (img.complete && img.naturalWidth) stamp(); else img.addEventListener('load', stamp, {once: true});
};
mark();
watch('value', mark);
"""
# Before an expression click reaches the server: the time since that trial's image was painted.
# Inputs (trial index, rt, state): the state is not visible to JS and passes through as null.
JS_RT = """
(trial, rt, events, state) => {
  const now = performance.now();
  const s = window.__studyShown;
  const ok = s && String(s.trial) === String(trial);
  const seen = JSON.stringify(window.__studyFocus || []);
  window.__studyFocus = [];
  return [trial, ok ? Math.round((now - s.t) * 1000) / 1000 : null, seen, state];
}
"""
# A quality click: the focus/blur events since the expression click go with it.
JS_EVENTS = """
(trial, events, state) => {
  const seen = JSON.stringify(window.__studyFocus || []);
  window.__studyFocus = [];
  return [trial, seen, state];
}
"""
# The browser as the page sees it, sent with the first visit and the Start click.
JS_CLIENT = (
    "JSON.stringify({vw: window.innerWidth, vh: window.innerHeight, sw: screen.width,"
    " sh: screen.height, dpr: window.devicePixelRatio})"
)
# Page load: start collecting focus/blur/visibility events (tagged with the picture on
# screen), and send the link's query string and the browser's size with the resume event.
JS_LOAD = f"""
(stored, query, client) => {{
  if (!window.__studyFocusOn) {{
    window.__studyFocusOn = true;
    window.__studyFocus = [];
    const add = (kind) => {{
      const s = window.__studyShown;
      if (window.__studyFocus.length < 200)
        window.__studyFocus.push({{kind: kind, trial: s ? s.trial : null, t: performance.now()}});
    }};
    window.addEventListener('blur', () => add('blur'));
    window.addEventListener('focus', () => add('focus'));
    document.addEventListener('visibilitychange', () => add(document.hidden ? 'hidden' : 'visible'));
  }}
  return [stored, window.location.search, {JS_CLIENT}];
}}
"""
JS_QUERY = "(agree, query, state) => [agree, window.location.search, state]"
JS_START = f"""
(agree, code, age, gender, vision, client, state) =>
  [agree, code, age, gender, vision, {JS_CLIENT}, state]
"""
# The end pages (done, screen-out) may send the rater back to the recruitment platform.
JS_REDIRECT = """
const go = () => {
  const el = element.querySelector('[data-study-redirect]');
  if (!el || window.__studyRedirect === el.dataset.studyRedirect) return;
  window.__studyRedirect = el.dataset.studyRedirect;
  setTimeout(() => window.location.assign(el.dataset.studyRedirect), Number(el.dataset.studyDelay));
};
go();
watch('value', go);
"""


def resolve_admin_token(token: str | None = None, *, announce: bool = True) -> str:
    """The admin token: given, or $UNMASK_STUDY_TOKEN, or a new random one printed once."""
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        token = secrets.token_urlsafe(18)
        if announce:
            print(f"Study admin token (set {TOKEN_ENV} to choose it): {token}", file=sys.stderr)
    return token


def default_service() -> StudyService:
    """A service on $DATABASE_URL / $UNMASK_STUDY_DB / study_data/study.sqlite."""
    return StudyService()


@lru_cache(maxsize=512)
def _data_uri(png: bytes) -> str:
    """The picture as a data URI; the service hands out one bytes object per stimulus, whose
    hash Python keeps, so a cache hit costs a dict lookup."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image_html(view: TrialView) -> str:
    return (
        '<div style="display:flex;justify-content:center;min-height:264px">'
        f'<img class="study-stim-img" data-trial="{view.trial_index}" alt="face" draggable="false"'
        f' style="width:256px;height:256px" src="{_data_uri(view.image_png)}"></div>'
    )


def _trial_index(screen: Screen) -> int | None:
    """The trial the page holds: the picture's (or, at the break, the next one's); -1 on an end
    page; None (unchanged) on a refusal or a stale click."""
    if screen.trial is not None:
        return screen.trial.trial_index
    return -1 if screen.stage in (Stage.DONE, Stage.SCREENOUT) else None


def _status_html(screen: Screen, redirect_delay_ms: int) -> str:
    """The trial page's status line. Its container's data attributes carry the Screen (stage,
    trial, progress, message, end code and link): STAGE_CSS shows the stage's block, the page's
    scripts follow the end link, the test client (study/http_client.py) reads them."""
    data = {
        "trial": _trial_index(screen),
        "progress": screen.progress,
        "message": screen.message,
        "end-code": screen.end_code,
        "refused": 1 if screen.refused else None,
    }
    if screen.end_url:
        data |= {"redirect": screen.end_url, "delay": redirect_delay_ms}
    attrs = f' data-study-stage="{screen.stage or ""}"'  # "": refused, no session to show
    attrs += "".join(
        f' data-study-{k}="{html.escape(str(v))}"' for k, v in data.items() if v not in (None, "")
    )
    parts = []
    if screen.progress:
        parts.append(f"<p><strong>{html.escape(screen.progress)}</strong></p>")
    end = screen.stage in (Stage.DONE, Stage.SCREENOUT)
    if screen.message and not end:
        parts.append(f'<p class="study-message"><strong>{html.escape(screen.message)}</strong></p>')
    if end:
        parts.append(_end_html(screen))
    return f'<div class="study-status"{attrs}>{"".join(parts)}</div>'


def _end_html(screen: Screen) -> str:
    """An end page's words, the platform's code, and the link back (followed by the page's
    script after a short delay)."""
    parts = (
        [f'<p class="study-end-text">{html.escape(screen.message)}</p>'] if screen.message else []
    )
    if screen.end_code:
        kind = "completion" if screen.stage is Stage.DONE else "screen-out"
        parts.append(
            f'<p>Your {kind} code: <code class="study-end-code">{html.escape(screen.end_code)}</code></p>'
        )
    if screen.end_url:
        parts.append(
            f'<p><a class="study-end-link" href="{html.escape(screen.end_url)}">Return to the study'
            " platform</a> (you will be taken there in a few seconds).</p>"
        )
    kind = "complete" if screen.stage is Stage.DONE else "screenout"
    return f'<div class="study-end study-end-{kind}">{"".join(parts)}</div>'


def wants_admin(query: str | None) -> bool:
    """Whether the page's query string asks for the experimenter panel (`?admin`)."""
    return "admin" in parse_qs((query or "").lstrip("?"), keep_blank_values=True)


def _ids(state: dict | None) -> RecruitmentIds | None:
    ids = (state or {}).get("ids")
    return RecruitmentIds(**ids) if ids else None


def _admin_html(text: str, *, refused: bool = False) -> str:
    """The experimenter panel's message line; a refusal carries the data attribute the trial
    page's refusals carry (data-study-message), which is how StudyClient tells it from a result."""
    attrs = f' class="study-message" data-study-message="{html.escape(text)}"' if refused else ""
    return f"<p{attrs}><strong>{html.escape(text)}</strong></p>"


def _code_html(code: str, source: str | None = None) -> str:
    if source == "url":  # the platform's id: not shown (a shared screen, a screenshot)
        return "<p>Your participant code came with the study link.</p>"
    return f'<p>Your participant code: <code class="study-code">{html.escape(code)}</code></p>'


def _state(screen: Screen, state: dict | None = None) -> dict:
    """The tab's gr.State: the session's token and code, and the link's ids."""
    state = dict(state or {})
    if screen.session is not None:
        state |= {"token": screen.session.token, "code": screen.session.code}
    if screen.ids is not None:
        state["ids"] = screen.ids.__dict__
    return state


def _build(service: StudyService, admin_token: str, root: gr.Blocks) -> None:
    """Lay out the rater flow and the admin panel in the current Blocks context, and wire it."""
    sess = gr.State({})  # {"token", "code", "ids"}: this browser tab's participant
    saved = gr.BrowserState(
        {}, storage_key=STORAGE_KEY, secret=service.secret_setting("browser_state_secret")
    )
    trial_box = gr.Number(
        value=-1, visible=False, precision=0, elem_id="study-trial-index"
    )  # index of the trial on screen
    rt_box = gr.Number(
        value=None, visible=False, elem_id="study-rt"
    )  # filled by JS_RT at the click
    # Filled by the page's JS: focus/blur events (with each answer and rating), the link's query string
    # and the browser's size (on load and at Start).
    events_box = gr.Textbox(value="", visible=False, elem_id="study-events")
    query_box = gr.Textbox(value="", visible=False, elem_id="study-query")
    client_box = gr.Textbox(value="", visible=False, elem_id="study-client")

    with gr.Column(visible=True, elem_id="study-page-consent") as consent_page:
        gr.Markdown(consent_text(service))
        agree = gr.Checkbox(
            label="I have read the above and agree to take part", value=False, elem_id="study-agree"
        )
        consent_btn = gr.Button("Continue", variant="primary", elem_id="study-consent")
        consent_msg = gr.Markdown(elem_id="study-consent-message")
    with gr.Column(visible=False, elem_id="study-page-register") as register_page:
        code_intro = gr.Markdown(
            "## About you\nChoose a code you will remember; do not use your name.",
            elem_id="study-code-intro",
        )
        code = gr.Textbox(label="Participant code", max_length=64, elem_id="study-code")
        with gr.Row():
            age = gr.Dropdown(list(AGE_BANDS), label="Age band (optional)", value=None)
            gender = gr.Dropdown(list(GENDERS), label="Gender (optional)", value=None)
            vision = gr.Radio(list(VISION), label="Glasses or lenses (optional)", value=None)
        start_btn = gr.Button("Start", variant="primary", elem_id="study-start")
        register_msg = gr.Markdown(elem_id="study-register-message")
    with gr.Column(visible=False, elem_id="study-page-instructions") as instructions_page:
        code_view = gr.HTML(elem_id="study-code-view")
        gr.Markdown(INSTRUCTIONS)
        begin_btn = gr.Button("Begin practice", variant="primary", elem_id="study-begin")
    with gr.Column(visible=False, elem_id="study-page-trial") as trial_page:
        # Rendered once; the status line's stage then picks the block shown (STAGE_BLOCKS).
        gr.HTML(f"<style>{STAGE_CSS}</style>", elem_id="study-stage-css", padding=False)
        status = gr.HTML("", elem_id="study-progress", js_on_load=JS_REDIRECT)
        stim_html = gr.HTML("", js_on_load=JS_STAMP_SHOWN, elem_id="study-stimulus")
        with gr.Column(elem_id=STAGE_BLOCKS[Stage.EXPRESSION]):
            gr.Markdown("Which expression do you see?")
            with gr.Row():
                expression_btns = {
                    e: gr.Button(e.capitalize(), elem_id=f"study-expr-{e}") for e in EXPRESSIONS
                }
        with gr.Column(elem_id=STAGE_BLOCKS[Stage.QUALITY]):
            gr.Markdown(
                f"How good is the picture's quality? {QUALITY.lowest} = {QUALITY.lowest_word}, "
                f"{QUALITY.highest} = {QUALITY.highest_word}."
            )
            with gr.Row():
                quality_btns = {
                    # One row of seven on a laptop screen (Gradio's default min width wraps 4 + 3).
                    q: gr.Button(str(q), elem_id=f"study-quality-{q}", min_width=48)
                    for q in QUALITY.levels
                }
        with gr.Column(elem_id=STAGE_BLOCKS[Stage.BREAK]):
            gr.Markdown(BREAK)
            continue_btn = gr.Button("Start", variant="primary", elem_id="study-continue")
        with gr.Column(elem_id=STAGE_BLOCKS[Stage.STALE]):
            resync_btn = gr.Button("Continue", variant="primary", elem_id="study-resync")
        with gr.Column(elem_id=STAGE_BLOCKS[Stage.DONE]):
            gr.Markdown(DONE)
        with gr.Column(elem_id=STAGE_BLOCKS[Stage.SCREENOUT]):
            gr.Markdown("## This session has ended")

    # Only at the page's address with ?admin (what `unmask study serve` prints): raters never see it.
    with gr.Accordion("Experimenter", open=False, visible=False, elem_id="study-admin") as admin:
        admin_key = gr.Textbox(label="Admin token", type="password", elem_id="study-admin-token")
        with gr.Row():
            progress_btn = gr.Button("Show progress", elem_id="study-admin-progress")
            export_btn = gr.Button("Export CSV", elem_id="study-admin-export")
        # Refusals (a wrong token) are words on the page, here, not a toast or a red badge.
        admin_msg = gr.HTML("", elem_id="study-admin-message")
        admin_people = gr.Dataframe(
            headers=PROGRESS_HEADERS,
            label="Participants",
            interactive=False,
            elem_id="study-admin-participants",
        )
        admin_lists = gr.Dataframe(
            headers=LIST_HEADERS, label="Lists", interactive=False, elem_id="study-admin-lists"
        )
        admin_file = gr.File(
            label="Long-format export", interactive=False, elem_id="study-admin-file"
        )

    # -- laying out a Screen -----------------------------------------------------------------
    # The stages with a page of their own; every other stage (and a refusal) is on the trial page.
    stage_pages = {
        Stage.CONSENT: consent_page,
        Stage.REGISTER: register_page,
        Stage.INSTRUCTIONS: instructions_page,
    }
    pages = [*stage_pages.values(), trial_page]
    delay_ms = service.online.redirect_delay_ms

    # Gradio rebuilds a component server-side for every property update, and for every output
    # an event lists but the handler leaves out (an implicit skip). Page switches, which need
    # them, happen a few times a session; the events of a trial list only the outputs they
    # always fill with plain values: the picture, the status line (whose stage picks the block
    # shown), the trial index.
    def trial_values(screen: Screen) -> dict:
        """The trial page's values: the picture (while one is up), the status line, the trial
        index. A refusal leaves the picture and the index as they are (the response-time clock
        is not restarted; a rare path, the skip's rebuild does not matter)."""
        index = None if screen.refused else _trial_index(screen)
        up = screen.stage in (Stage.EXPRESSION, Stage.QUALITY)
        if screen.refused:
            picture = gr.skip() if up else ""
        else:
            picture = _image_html(screen.trial) if up else ""
        return {
            stim_html: picture,
            status: _status_html(screen, delay_ms),
            trial_box: gr.skip() if index is None else index,
        }

    def page(screen: Screen, state: dict | None = None) -> dict:
        """A page switch: the screen's page shown, its values, and the session it started or
        resumed (the tab's state, the browser's copy of the token, the code shown)."""
        shown = stage_pages.get(screen.stage, trial_page)
        out: dict = {p: gr.update(visible=p is shown) for p in pages}
        if shown is trial_page:
            out |= trial_values(screen)
        info = screen.session
        if info is not None:
            out |= {
                sess: _state(screen, state),
                saved: {"token": info.token},
                code_view: _code_html(info.code, info.code_source),
                begin_btn: gr.update(value="Begin practice" if info.n_practice else "Begin"),
            }
        return out

    trial_outputs = [stim_html, status, trial_box]
    page_outputs = [*pages, *trial_outputs, sess, saved, code_view, begin_btn]
    # Cheap database calls: answered directly (no queue round trips), never behind each other.
    events = {"concurrency_limit": None, "queue": False}

    # -- consent and registration ------------------------------------------------------------
    def on_consent(agreed: bool, query: str, state: dict) -> dict:
        screen = service.consent_screen(agreed, query, _ids(state))
        if screen.stage is Stage.CONSENT:
            return {consent_msg: screen.message}
        out = {p: gr.update(visible=p is register_page) for p in pages} | {consent_msg: ""}
        if screen.ids is not None:  # a recruitment link's code: nothing to type (nor to see)
            out |= {
                sess: _state(screen, state),
                code_intro: f"## About you\n{LINK_CODE}",
                code: gr.update(visible=False),
            }
        return out

    consent_btn.click(
        on_consent,
        [agree, query_box, sess],
        [*pages, sess, consent_msg, code_intro, code],
        js=JS_QUERY,
        api_name="study_consent",
        **events,
    )

    def on_start(
        agreed, code_text, age_band, gender_v, vision_v, client, state, request: gr.Request
    ):
        screen = service.start_screen(
            code_text,
            consent=bool(agreed),
            ids=_ids(state),
            client=ClientInfo.from_json(client),
            age_band=age_band,
            gender=gender_v,
            vision_corrected=vision_v,
            user_agent=request.headers.get("user-agent") if request is not None else None,
        )
        if screen.stage is Stage.REGISTER:
            return {register_msg: f"**{screen.message}**"}
        return {**page(screen, state), register_msg: ""}

    start_btn.click(
        on_start,
        [agree, code, age, gender, vision, client_box, sess],
        [*page_outputs, register_msg],
        js=JS_START,
        api_name="study_start",
        **events,
    )

    # -- resume after a reload, a crash or a new tab -----------------------------------------
    # Every handler returns an update for its outputs on every path: a dict with at least one
    # key, or gr.skip() for "change nothing". Gradio takes an empty dict for a single value and
    # fails the event ("didn't return enough output values"), which the page shows as a red
    # "Error" badge over whatever the outputs are (here: the consent form, on every first visit).
    def on_resume(stored: dict | None, query: str, client: str) -> dict:
        token = (stored or {}).get("token")
        screen = service.landing_screen(token, query, ClientInfo.from_json(client))
        if screen is None:  # a first visit: the consent page as served
            return gr.skip()
        if screen.stage is Stage.CONSENT:  # nothing to resume: forget the browser's token
            return {saved: {}} | ({sess: _state(screen)} if screen.ids else {})
        return page(screen)

    root.load(
        on_resume,
        [saved, query_box, client_box],
        page_outputs,
        js=JS_LOAD,
        api_name="study_resume",
        **events,
    )

    root.load(
        lambda query: gr.update(visible=wants_admin(query)),
        [query_box],
        [admin],
        js="(query) => [window.location.search]",
        api_name="study_admin_panel",
        **events,
    )

    # -- trials ------------------------------------------------------------------------------
    def current(state: dict) -> Screen:
        return service.current_screen(state.get("token"), _ids(state))

    begin_btn.click(
        lambda state: page(current(state)), [sess], page_outputs, api_name="study_begin", **events
    )
    for btn, api_name in ((continue_btn, "study_continue"), (resync_btn, "study_resync")):
        btn.click(
            lambda state: trial_values(current(state)),
            [sess],
            trial_outputs,
            api_name=api_name,
            **events,
        )

    def on_answer(expression: str, trial_index, rt_ms, seen: str, state: dict) -> str:
        """The status line only: the picture stays up while the quality scale replaces the
        expression buttons (or a stale click's button to the current picture does)."""
        screen = service.answer_screen(
            state.get("token"), trial_index, expression, rt_ms, events=seen, ids=_ids(state)
        )
        return _status_html(screen, delay_ms)

    for e, btn in expression_btns.items():
        btn.click(
            partial(on_answer, e),
            [trial_box, rt_box, events_box, sess],
            [status],
            js=JS_RT,
            api_name=f"study_answer_{e}",
            **events,
        )

    def on_rate(quality: int, trial_index, seen: str, state: dict) -> dict:
        screen = service.rating_screen(
            state.get("token"), trial_index, quality, _ids(state), events=seen
        )
        return trial_values(screen)

    for q, btn in quality_btns.items():
        btn.click(
            partial(on_rate, q),
            [trial_box, events_box, sess],
            trial_outputs,
            js=JS_EVENTS,
            api_name=f"study_rate_{q}",
            **events,
        )

    # -- admin: nothing without the token ----------------------------------------------------
    def on_progress(token: str) -> dict:
        try:
            require_admin_token(token, admin_token)
        except StudyError as exc:  # and the tables emptied: nothing shown without the token
            refused = _admin_html(str(exc), refused=True)
            return {admin_msg: refused, admin_people: None, admin_lists: None}
        people = service.progress()
        lists = service.list_progress()
        done = sum(p.completed for p in people)
        return {
            admin_msg: _admin_html(f"{len(people)} participants, {done} completed."),
            admin_people: [
                [
                    p.code,
                    p.list_index,
                    p.n_answered,
                    p.n_rated,
                    p.n_trials,
                    p.started_at.isoformat(timespec="seconds"),
                    ""
                    if p.last_answer_at is None
                    else p.last_answer_at.isoformat(timespec="seconds"),
                    "yes" if p.completed else "no",
                ]
                for p in people
            ]
            or None,
            admin_lists: [[r["list"], r["participants"], r["completed"]] for r in lists] or None,
        }

    progress_btn.click(
        on_progress,
        [admin_key],
        [admin_msg, admin_people, admin_lists],
        api_name="study_admin_progress",
        **events,
    )

    exports: list[Path] = []  # this app's export folder still on disk

    def on_export(token: str) -> dict:
        try:
            require_admin_token(token, admin_token)
        except StudyError as exc:
            return {admin_msg: _admin_html(str(exc), refused=True), admin_file: None}
        # A fresh unguessable folder per export: the file's URL is as secret as the token. The
        # earlier exports' folders go (Gradio has served its own copy, which its cache clears).
        while exports:
            shutil.rmtree(exports.pop(), ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix="unmask-export-"))
        exports.append(folder)
        path = service.write_export(folder / "study_export.csv")
        return {admin_msg: _admin_html("Export ready: the file is below."), admin_file: str(path)}

    export_btn.click(
        on_export,
        [admin_key],
        [admin_msg, admin_file],
        api_name="study_admin_export",
        **events,
    )


def build_study_tab(
    service: StudyService | None = None, *, admin_token: str | None = None, label: str = "Study"
) -> gr.Tab:
    """Add the study as a tab of the Blocks being built (call inside `with gr.Blocks() as demo:`)."""
    set_offline_env()
    root = gr.context.Context.root_block
    if root is None:
        raise RuntimeError("build_study_tab must be called inside a gr.Blocks context")
    service = service or default_service()
    with gr.Tab(label, id="study") as tab:
        _build(service, resolve_admin_token(admin_token), root)
    return tab


def build_study_app(
    service: StudyService | None = None, *, admin_token: str | None = None
) -> gr.Blocks:
    """The study alone (what `unmask study serve` launches)."""
    set_offline_env()
    service = service or default_service()
    # Gradio's cached copies (the admin's export file) are deleted within 20 minutes.
    with gr.Blocks(
        title="Face perception study", analytics_enabled=False, delete_cache=(600, 600)
    ) as demo:
        _build(service, resolve_admin_token(admin_token), demo)
    return demo
