"""A scripted rater over the study app's real HTTP API (tests, the load benchmark, pilot scripts).

It posts to Gradio's direct-call route (`/gradio_api/run/<api_name>`), the route the browser
uses for these unqueued events, and reads outputs by the components' elem_ids from `/config`;
the screen itself (stage, trial, progress, message, end code and link) from the data attributes
of the status line's container, which the app writes from the service's `Screen`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import httpx


class StudyHTTPError(RuntimeError):
    """The server refused or failed a call (HTTP status, Gradio error message)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class _DataAttributes(HTMLParser):
    """The attributes of the first element that carries `data-study-<key>`: the app puts the
    screen it shows on its status line's container as data attributes (study/app.py)."""

    def __init__(self, key: str):
        super().__init__()
        self.key, self.found = f"data-study-{key}", None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.found is None and any(name == self.key for name, _ in attrs):
            self.found = {name.removeprefix("data-study-"): value or "" for name, value in attrs}


def data_attributes(page_html: str, key: str) -> dict[str, str] | None:
    """{"stage": ..., "trial": ..., ...} of the first element with data-study-<key>, or None."""
    parser = _DataAttributes(key)
    parser.feed(page_html or "")
    parser.close()
    return parser.found


@dataclass(frozen=True)
class Screen:
    """What the rater's page shows after a call."""

    html: str  # the picture (data URI img), "" on the break and done pages
    progress: str
    trial_index: int  # the trial on screen (the next one at the break); -1 when done; -2 unknown
    message: str
    # A study.service.Stage value: "expression" | "quality" | "break" | "stale" | "done" |
    # "screenout" | ...; None: a refused request without a session to show
    stage: str | None
    end_code: str = ""  # the completion or screen-out code an end page shows
    redirect: str = ""  # where an end page sends the rater
    refused: bool = False  # the click was refused (the message says why); the page stays put

    @property
    def done(self) -> bool:
        return self.trial_index == -1

    @property
    def screened_out(self) -> bool:
        return self.stage == "screenout"

    @property
    def at_break(self) -> bool:
        return self.stage == "break"

    @property
    def stale(self) -> bool:
        """The click was for a picture that is no longer current: call `resync()`."""
        return self.stage == "stale"


class StudyClient:
    """One rater (one Gradio session) talking to a served study app."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, http: httpx.Client | None = None):
        self.base_url = base_url.rstrip("/")
        self.http = http or httpx.Client(timeout=timeout)
        self.session_hash = secrets.token_hex(8)
        self.token: str | None = None
        config = self.http.get(f"{self.base_url}/config").raise_for_status().json()
        components = {c["id"]: c for c in config["components"]}
        self._deps = {}
        for d in config["dependencies"]:
            if d.get("api_name"):
                names = []
                for cid in d["outputs"]:
                    c = components.get(cid, {})
                    names.append(c.get("props", {}).get("elem_id") or c.get("type"))
                self._deps[d["api_name"]] = (d["inputs"], names)

    def call(self, api_name: str, *data: Any) -> dict[str, Any]:
        """Run an event with its visible inputs (state slots are filled with None); outputs by name."""
        inputs, names = self._deps[api_name]
        payload = list(data) + [None] * (len(inputs) - len(data))
        r = self.http.post(
            f"{self.base_url}/gradio_api/run/{api_name}",
            json={"data": payload, "session_hash": self.session_hash},
        )
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code != 200 or "error" in body:
            raise StudyHTTPError(r.status_code, str(body.get("error") or r.text[:200]))
        return dict(zip(names, body["data"], strict=False))

    @staticmethod
    def _screen(out: dict[str, Any]) -> Screen:
        def value(key: str, default: Any) -> Any:
            v = out.get(key, default)
            return default if isinstance(v, dict) and v.get("__type__") == "update" else v

        status = data_attributes(value("study-progress", "") or "", "stage") or {}
        index = value("study-trial-index", None)
        if index is None and status.get("trial"):  # events that send the status line only
            index = status["trial"]
        return Screen(
            html=value("study-stimulus", "") or "",
            progress=status.get("progress", ""),
            trial_index=-2 if index is None else int(index),
            message=status.get("message", ""),
            stage=status.get("stage") or None,
            end_code=status.get("end-code", ""),
            redirect=status.get("redirect", ""),
            refused=status.get("refused") == "1",
        )

    # -- the rater's steps ---------------------------------------------------------------
    def start(
        self, code: str, *, age_band=None, gender=None, vision=None, client: str | None = None
    ) -> dict[str, Any]:
        """Register (`client`: the page's JSON of the browser's size, as JS_CLIENT sends it)."""
        out = self.call("study_start", True, code, age_band, gender, vision, client)
        saved = out.get("browserstate")
        if not isinstance(saved, dict) or "token" not in saved:
            raise StudyHTTPError(200, str(out.get("study-register-message")))
        self.token = saved["token"]
        return out

    def resume(self, token: str | None = None) -> Screen:
        self.token = token or self.token
        return self._screen(self.call("study_resume", {"token": self.token}))

    def begin(self) -> Screen:
        return self._screen(self.call("study_begin"))

    def next(self) -> Screen:
        return self._screen(self.call("study_continue"))

    def past_break(self, screen: Screen) -> Screen:
        """`screen`, or the first real trial when `screen` is the practice break page."""
        return self.next() if screen.at_break else screen

    def resync(self) -> Screen:
        return self._screen(self.call("study_resync"))

    def answer(self, trial_index: int, expression: str, rt_ms: float | None) -> Screen:
        return self._screen(self.call(f"study_answer_{expression}", trial_index, rt_ms))

    def rate(self, trial_index: int, quality: int) -> Screen:
        return self._screen(self.call(f"study_rate_{quality}", trial_index))

    def admin_progress(self, token: str) -> dict[str, Any]:
        return self._admin("study_admin_progress", token)

    def admin_export(self, token: str) -> dict[str, Any]:
        return self._admin("study_admin_export", token)

    def _admin(self, api_name: str, token: str) -> dict[str, Any]:
        """The outputs; a refusal (a wrong token), which the page shows as its message line,
        raises StudyHTTPError with those words."""
        out = self.call(api_name, token)
        refused = data_attributes(str(out.get("study-admin-message") or ""), "message")
        if refused:
            raise StudyHTTPError(200, refused["message"])
        return out

    def close(self) -> None:
        self.http.close()
