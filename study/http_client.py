"""A scripted rater over the study app's real HTTP API (tests, the load benchmark, pilot scripts).

It posts to Gradio's direct-call route (`/gradio_api/run/<api_name>`), the route the browser
uses for these unqueued events, and reads outputs by the components' elem_ids from `/config`.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass, replace
from typing import Any

import httpx


class StudyHTTPError(RuntimeError):
    """The server refused or failed a call (HTTP status, Gradio error message)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


# A refusal's words in an output's HTML (the trial page's status line, the admin panel's line).
_MESSAGE = re.compile(r'class="study-message"><strong>(.*?)</strong>')
_END_CODE = re.compile(r'class="study-end-code">(.*?)</code>')
_REDIRECT = re.compile(r'data-study-redirect="(.*?)"')


@dataclass(frozen=True)
class Screen:
    """What the rater's page shows after a call."""

    html: str  # the picture (data URI img), "" on the break and done pages
    progress: str
    trial_index: int  # the trial on screen; -1 when done
    message: str
    # "expression" | "quality" | "break" | "stale" | "done" | "screenout" | None (an error)
    stage: str | None
    end_code: str = ""  # the completion or screen-out code an end page shows
    redirect: str = ""  # where an end page sends the rater

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

        status = value("study-progress", "") or ""
        stage = re.search(r'class="study-status" data-study-stage="(\w*)"', status)
        texts = [html.unescape(t) for t in re.findall(r"<strong>(.*?)</strong>", status)]
        message = _MESSAGE.search(status)
        end_code = _END_CODE.search(status)
        redirect = _REDIRECT.search(status)
        index = value("study-trial-index", None)
        return Screen(
            html=value("study-stimulus", "") or "",
            progress=texts[0] if texts else "",
            trial_index=-2 if index is None else int(index),
            message=html.unescape(message.group(1)) if message else "",
            stage=(stage.group(1) or None) if stage else None,
            end_code=html.unescape(end_code.group(1)) if end_code else "",
            redirect=html.unescape(redirect.group(1)) if redirect else "",
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
        screen = self._screen(self.call(f"study_answer_{expression}", trial_index, rt_ms))
        if screen.trial_index == -2 and screen.stage == "quality":  # the picture stays up
            screen = replace(screen, trial_index=trial_index)
        return screen

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
        message = _MESSAGE.search(str(out.get("study-admin-message") or ""))
        if message:
            raise StudyHTTPError(200, html.unescape(message.group(1)))
        return out

    def close(self) -> None:
        self.http.close()
