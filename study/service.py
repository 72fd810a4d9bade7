"""Every read and write of the study: stimuli registration, sessions, trials, responses, progress, export.

Plain Python on SQLAlchemy (no gradio): the Gradio app, the CLI, the tests and the benchmark all
call this. Each answer is committed in its own transaction the moment it arrives; repeats of the
same answer (double click, retried request) are recognised and stored once.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import math
import secrets
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, quote

from sqlalchemy import Connection, Engine, Row, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from model.config import EXPRESSIONS, QUALITY
from study import design
from study.db import WRITE, is_sqlite, make_engine
from study.schema import (
    BrowserEvent,
    Participant,
    Response,
    Setting,
    Stimulus,
    Trial,
    utcnow,
)

_P, _T, _R, _S, _E = (m.__table__ for m in (Participant, Trial, Response, Stimulus, BrowserEvent))

# docs/DESIGN.md's long-format export, in this order.
EXPORT_COLUMNS = (
    "participant_id",
    "trial_index",
    "stimulus_id",
    "image_id",
    "method",
    "expression_true",
    "expression_chosen",
    "correct",
    "quality",
    "rt_ms",
    "is_practice",
    "is_catch",
    "answered_at",
    # Online recruitment and the browser (after docs/DESIGN.md's columns, so old readers still work).
    "code_source",
    "recruitment_study_id",
    "recruitment_session_id",
    "user_agent",
    "viewport_width",
    "viewport_height",
    "screen_width",
    "screen_height",
    "device_pixel_ratio",
    "n_blur",
    "screened_out",
    "completed",
)
BLUR_KINDS = ("blur", "hidden")  # the page lost the rater's attention
EVENT_KINDS = ("blur", "focus", "hidden", "visible")
MAX_EVENTS = 200  # focus/blur events stored with one answer; more is a broken page
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
GENDERS = ("female", "male", "non-binary or other", "prefer not to say")
VISION = ("yes", "no")
MAX_CODE_LEN = 64
REGISTRATION_LOCK = "registration_lock"  # settings row locked by registrations (not SQLite)
MAX_RT_MS = 3_600_000.0  # an hour: anything longer is a broken clock, stored as missing
MAX_TRIALS = 100_000  # far beyond any session; bounds a client-sent index


class StudyError(ValueError):
    """A request the study refuses; `reason` is a slug, the message is for people."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RecruitmentIds:
    """The ids a recruitment platform put in the study link (participant, study, session)."""

    participant: str
    study: str | None = None
    session: str | None = None


@dataclass(frozen=True)
class ClientInfo:
    """The rater's browser as the page measured it (CSS pixels)."""

    viewport_width: int | None = None
    viewport_height: int | None = None
    screen_width: int | None = None
    screen_height: int | None = None
    device_pixel_ratio: float | None = None

    @classmethod
    def from_json(cls, text: str | dict | None) -> ClientInfo:
        """From the page's JSON ({"vw", "vh", "sw", "sh", "dpr"}); anything unreadable is None."""
        try:
            data = json.loads(text) if isinstance(text, str) else (text or {})
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}

        def number(key: str, kind=int):
            try:
                value = kind(data.get(key))
            except (TypeError, ValueError, OverflowError):
                return None
            return value if 0 < value < 100_000 else None

        return cls(number("vw"), number("vh"), number("sw"), number("sh"), number("dpr", float))


@dataclass(frozen=True)
class OnlineConfig:
    """How an online (recruited) study runs: link parameters, end pages, screen-out rules.

    The defaults change nothing for a lab study: no link ids are needed, no redirect, no rule.
    `completion_url` and `screenout_url` may hold `{participant}`, `{study}`, `{session}` and
    `{code}` (the completion or screen-out code), filled in URL-encoded.
    """

    participant_param: str = "PROLIFIC_PID"
    study_param: str = "STUDY_ID"
    session_param: str = "SESSION_ID"
    completion_code: str | None = None
    completion_url: str | None = None
    screenout_code: str | None = None
    screenout_url: str | None = None
    min_width: int = 0  # smallest viewport (CSS px) that may take part; 0: any
    min_height: int = 0
    max_catch_failures: int | None = None  # screen out at this many wrong catch trials
    redirect_delay_ms: int = 3000  # the end page shows its code this long before leaving

    def ids_from_query(self, query: str | None) -> RecruitmentIds | None:
        """The recruitment ids in a page's query string ("?PROLIFIC_PID=...&..."), if any."""
        params = parse_qs((query or "").lstrip("?"), keep_blank_values=False)

        def first(name: str) -> str | None:
            values = params.get(name) or [""]
            value = values[0].strip()[:MAX_CODE_LEN]
            return value if value and value.isprintable() else None

        participant = first(self.participant_param)
        if participant is None:
            return None
        return RecruitmentIds(participant, first(self.study_param), first(self.session_param))

    def screen_too_small(self, client: ClientInfo | None) -> bool:
        """Known to be smaller than the minimum viewport (unknown sizes pass)."""
        if client is None:
            return False
        w, h = client.viewport_width, client.viewport_height
        return (w is not None and w < self.min_width) or (h is not None and h < self.min_height)

    def end_link(self, kind: str, ids: RecruitmentIds | None) -> tuple[str | None, str | None]:
        """(code, URL) shown at the end: kind "complete" or "screenout"."""
        code, url = (
            (self.completion_code, self.completion_url)
            if kind == "complete"
            else (self.screenout_code, self.screenout_url)
        )
        if url:
            fields = {
                "participant": ids.participant if ids else "",
                "study": (ids.study if ids else None) or "",
                "session": (ids.session if ids else None) or "",
                "code": code or "",
            }
            for key, value in fields.items():
                url = url.replace("{" + key + "}", quote(value, safe=""))
        return code, url


@dataclass(frozen=True)
class ScreenOut:
    """The session was ended early: no more trials; `reason` is a slug ("attention", ...)."""

    reason: str
    message: str


SCREEN_OUT_MESSAGES = {
    "attention": "Thank you for your time. Some answers to the check pictures did not match "
    "what they clearly show, so this session has ended here.",
    "small_screen": "This study needs a larger screen or browser window. Please open the link "
    "on a computer or tablet, or make the window larger and reload the page.",
}


STALE_MESSAGE = (
    "This picture was already answered (in another window?): continue with the current one."
)


class Stage(StrEnum):
    """Every screen a rater's page can show, in the order a session meets them. The service
    picks the stage (`StudyService.*_screen`); the app lays each one out."""

    CONSENT = "consent"  # the first page; also a page load with nothing to resume
    REGISTER = "register"  # the participant code and the optional questions
    INSTRUCTIONS = "instructions"  # a session that has not answered anything yet
    EXPRESSION = "expression"  # the picture, waiting for the expression click
    QUALITY = "quality"  # the same picture, waiting for the quality rating
    BREAK = "break"  # the practice block is done: a button starts the main trials
    STALE = "stale"  # a click for a picture no longer current: a button to the current one
    DONE = "done"  # every trial answered and rated
    SCREENOUT = "screenout"  # ended early (attention checks, a screen too small)


@dataclass(frozen=True)
class StimulusRow:
    """One stimulus as the builder (or a test) registers it; `file` is relative to the stimuli dir."""

    stimulus_id: str
    image_id: str
    expression: str
    method: str
    file: str
    sha256: str
    role: str = "main"
    performer: str | None = None


@dataclass(frozen=True)
class SessionInfo:
    token: str  # secret the browser keeps to resume; only its hash is stored
    code: str
    resumed: bool
    n_trials: int
    n_practice: int
    code_source: str | None = None  # "url" when the code came with a recruitment link
    ids: RecruitmentIds | None = None


@dataclass(frozen=True)
class TrialView:
    """What a rater may know about the current trial: no method, no stimulus id, no file name."""

    trial_index: int
    n_trials: int
    n_practice: int
    is_practice: bool
    stage: Stage  # EXPRESSION (image shown, waiting for the click) or QUALITY
    image_png: bytes
    shown: bool = False  # the picture was on screen before this view (it has a show time)

    @property
    def position(self) -> int:
        """1-based position within its block (practice, or the main trials)."""
        return self.trial_index + 1 if self.is_practice else self.trial_index - self.n_practice + 1

    @property
    def block_size(self) -> int:
        return self.n_practice if self.is_practice else self.n_trials - self.n_practice


def ends_practice(trial_index: int, n_practice: int) -> bool:
    """Whether answering `trial_index` finishes the practice block (a break page follows)."""
    return n_practice > 0 and trial_index == n_practice - 1


@dataclass(frozen=True)
class Screen:
    """What the rater's page shows next: one stage, the trial on it, the words for it.

    `refused`: a refused click; `message` says why and the page stays where it was (`stage`
    and `trial` are the current screen, re-read; `stage` None when there is no session).
    """

    stage: Stage | None
    trial: TrialView | None = None  # the picture (EXPRESSION, QUALITY), the next one (BREAK)
    message: str = ""
    session: SessionInfo | None = None  # a session this screen started or resumed
    ids: RecruitmentIds | None = None  # the recruitment link's ids, when known
    end_code: str | None = None  # DONE / SCREENOUT: the platform's code to show
    end_url: str | None = None  # ... and the link back to the platform
    refused: bool = False

    @property
    def progress(self) -> str:
        """ "Practice 1 of 3" / "Picture 4 of 40" while a picture is up, else ""."""
        t = self.trial
        if t is None or self.stage not in (Stage.EXPRESSION, Stage.QUALITY):
            return ""
        return f"{'Practice' if t.is_practice else 'Picture'} {t.position} of {t.block_size}"


@dataclass(frozen=True)
class RecordOutcome:
    stored: bool  # False: an identical trial was already answered (a repeat; nothing changed)
    trial_index: int
    value: str | int  # the value now stored (the first one given, on a repeat)


@dataclass(frozen=True)
class ParticipantProgress:
    code: str
    list_index: int
    n_trials: int
    n_answered: int
    n_rated: int
    started_at: datetime
    last_answer_at: datetime | None
    completed: bool


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def iso_utc(t: datetime | None) -> str:
    return "" if t is None else t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StudyService:
    """The study's state in one database; cheap to share between threads and users."""

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        stimuli_dir: str | Path | None = None,
        online: OnlineConfig | None = None,
    ):
        self.engine = engine if engine is not None else make_engine()
        self.online = online or OnlineConfig()
        self._write_engine = self.engine.execution_options(**WRITE)
        # One writer at a time inside this process: SQLite allows one anyway, and queueing here
        # is fairer and faster than its sleep-and-retry busy handler. Other engines need none.
        self._write_lock = threading.Lock() if is_sqlite(self.engine) else None
        self._stimuli_dir = Path(stimuli_dir) if stimuli_dir is not None else None
        self._refs: list[design.StimulusRef] | None = None
        self._read_image = lru_cache(maxsize=2048)(self._read_image_uncached)
        self._count_cache: dict[int, tuple[int, int]] = {}
        self._pids: dict[str, int] = {}  # token hash -> participant id
        self._registration_lock_ready = False
        self._files: dict[str, tuple[str, str]] = {}  # stimulus id -> (file, sha256)

    # -- units of work -------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._write_lock or nullcontext():
            with Session(self._write_engine, expire_on_commit=False) as s, s.begin():
                yield s

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    # -- settings ------------------------------------------------------------------------
    def setting(self, key: str, default: str | None = None) -> str | None:
        with self._read() as s:
            row = s.get(Setting, key)
            return row.value if row else default

    def set_setting(self, key: str, value: str) -> None:
        with self._write() as s:
            s.merge(Setting(key=key, value=value))

    def secret_setting(self, key: str) -> str:
        """A random secret made once and kept in the database (e.g. the browser-state key)."""
        value = self.setting(key)
        if value is None:
            with self._write() as s:
                row = s.get(Setting, key)
                if row is None:
                    row = Setting(key=key, value=secrets.token_urlsafe(24))
                    s.add(row)
                value = row.value
        return value

    @property
    def stimuli_dir(self) -> Path:
        if self._stimuli_dir is None:
            stored = self.setting("stimuli_dir")
            if stored is None:
                raise StudyError("no_stimuli", "no stimuli registered: run `unmask study build`")
            self._stimuli_dir = Path(stored)
        return self._stimuli_dir

    # -- stimuli -------------------------------------------------------------------------
    def register_stimuli(self, rows: Iterable[StimulusRow], stimuli_dir: str | Path) -> int:
        """Store the stimulus rows (files must exist and match their sha256); returns the count.

        Refused once participants exist: their sequences point at the current set.
        """
        root = Path(stimuli_dir).resolve()
        rows = list(rows)
        for r in rows:
            path = root / r.file
            if not path.is_file():
                raise StudyError("missing_file", f"stimulus file not found: {path}")
            if file_sha256(path) != r.sha256:
                raise StudyError("bad_sha256", f"sha256 mismatch for {path}")
            if r.expression not in EXPRESSIONS:
                raise StudyError("bad_expression", f"{r.expression!r} not in {EXPRESSIONS}")
        design.validate([self._ref(r) for r in rows])
        with self._write() as s:
            if s.scalar(select(func.count(Participant.id))):
                raise StudyError(
                    "has_participants", "the study already has participants: use a new database"
                )
            for old in s.scalars(select(Stimulus)):
                s.delete(old)
            s.flush()
            s.add_all(
                Stimulus(
                    id=r.stimulus_id,
                    image_id=r.image_id,
                    performer=r.performer,
                    expression=r.expression,
                    method=r.method,
                    role=r.role,
                    file=r.file,
                    sha256=r.sha256,
                )
                for r in rows
            )
            s.merge(Setting(key="stimuli_dir", value=str(root)))
        self._stimuli_dir = root
        self._refs = None
        self._files = {}
        self._read_image.cache_clear()
        return len(rows)

    @staticmethod
    def _ref(r: StimulusRow | Stimulus) -> design.StimulusRef:
        sid = r.stimulus_id if isinstance(r, StimulusRow) else r.id
        return design.StimulusRef(sid, r.image_id, r.expression, r.method, r.role)

    def stimulus_refs(self) -> list[design.StimulusRef]:
        if self._refs is None:
            with self._read() as s:
                self._refs = [self._ref(x) for x in s.scalars(select(Stimulus))]
        return self._refs

    def has_stimuli(self) -> bool:
        return bool(self._reload_refs())

    def _reload_refs(self) -> list[design.StimulusRef]:
        self._refs = None
        return self.stimulus_refs()

    def _read_image_uncached(self, file: str, sha256: str) -> bytes:
        data = (self.stimuli_dir / file).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StudyError("bad_sha256", f"stimulus file changed on disk: {file}")
        return data

    # -- sessions ------------------------------------------------------------------------
    def start_session(
        self,
        code: str,
        *,
        consent: bool,
        age_band: str | None = None,
        gender: str | None = None,
        vision_corrected: str | None = None,
        user_agent: str | None = None,
        resume_token: str | None = None,
        ids: RecruitmentIds | None = None,
        client: ClientInfo | None = None,
    ) -> SessionInfo:
        """Register a participant (or resume one with its token) and plan their whole sequence.

        With `ids` (a recruitment link's) the code is the link's participant id; a code that
        already came by link resumes (a second visit never restarts). A viewport below the
        configured minimum is refused (StudyError "small_screen") before anything is stored.
        """
        if ids is not None:
            code = ids.participant
            resumed = self.resume_code(code)
            if resumed is not None:
                return resumed
        if self.online.screen_too_small(client):
            raise StudyError("small_screen", SCREEN_OUT_MESSAGES["small_screen"])
        client = client or ClientInfo()
        if not consent:
            raise StudyError("no_consent", "consent is needed to take part")
        code = (code or "").strip()
        if not code:
            raise StudyError("no_code", "please enter a participant code")
        if len(code) > MAX_CODE_LEN or not code.isprintable():
            raise StudyError("bad_code", f"codes are 1 to {MAX_CODE_LEN} printable characters")
        for value, allowed, name in (
            (age_band, AGE_BANDS, "age band"),
            (gender, GENDERS, "gender"),
            (vision_corrected, VISION, "vision corrected"),
        ):
            if value not in (None, "") and value not in allowed:
                raise StudyError("bad_field", f"unknown {name}: {value!r}")

        refs = self.stimulus_refs() or self._reload_refs()
        if not refs:
            raise StudyError("no_stimuli", "no stimuli registered: run `unmask study build`")
        self._registration_lock_row()
        for _attempt in range(5):
            token = secrets.token_urlsafe(24)
            try:
                with self._write() as s:
                    if self._write_lock is None:  # one registration at a time (next ordinal)
                        s.execute(
                            select(Setting.key)
                            .where(Setting.key == REGISTRATION_LOCK)
                            .with_for_update()
                        )
                    existing = s.scalar(select(Participant).where(Participant.code == code))
                    if existing is not None:
                        if resume_token and hmac.compare_digest(
                            existing.token_hash, token_hash(resume_token)
                        ):
                            return self._info(s, existing, resume_token, resumed=True)
                        raise StudyError(
                            "code_taken",
                            "this code is already in use: choose another one, or continue "
                            "in the browser where you started",
                        )
                    ordinal = s.scalar(select(func.coalesce(func.max(Participant.ordinal) + 1, 0)))
                    seed = secrets.randbits(31)
                    completed, in_progress = Counter(), Counter()
                    for lst, done, out in s.execute(
                        select(
                            Participant.list_index,
                            Participant.completed_at.is_not(None),
                            Participant.screen_out_reason.is_not(None),
                        )
                    ):
                        if done:
                            completed[lst] += 1
                        elif not out:
                            in_progress[lst] += 1
                    list_index = design.next_list(ordinal, refs, completed, in_progress)
                    plan = design.participant_sequence(refs, list_index, seed)
                    p = Participant(
                        code=code,
                        ordinal=ordinal,
                        list_index=list_index,
                        seed=seed,
                        token_hash=token_hash(token),
                        consent_at=utcnow(),
                        age_band=age_band or None,
                        gender=gender or None,
                        vision_corrected=vision_corrected or None,
                        user_agent=(user_agent or None) and user_agent[:512],
                        code_source="url" if ids is not None else "typed",
                        recruitment_study_id=ids.study if ids else None,
                        recruitment_session_id=ids.session if ids else None,
                        viewport_width=client.viewport_width,
                        viewport_height=client.viewport_height,
                        screen_width=client.screen_width,
                        screen_height=client.screen_height,
                        device_pixel_ratio=client.device_pixel_ratio,
                    )
                    s.add(p)
                    s.flush()
                    s.add_all(
                        Trial(
                            participant_id=p.id,
                            trial_index=t.trial_index,
                            stimulus_id=t.stimulus_id,
                            image_id=t.image_id,
                            is_practice=t.is_practice,
                            is_catch=t.is_catch,
                        )
                        for t in plan
                    )
                    s.flush()
                    return self._info(s, p, token, resumed=False)
            except IntegrityError:
                continue  # another process took the code or the ordinal in between: look again
        raise StudyError("busy", "could not register, please try again")

    def _registration_lock_row(self) -> None:
        """The row registrations lock on engines with concurrent writers (PostgreSQL): each
        reads the highest ordinal then inserts the next, so two at once would collide on every
        retry. SQLite needs none: the process's write lock and BEGIN IMMEDIATE serialise them."""
        if self._write_lock is not None or self._registration_lock_ready:
            return
        try:
            with self._write() as s:
                if s.get(Setting, REGISTRATION_LOCK) is None:
                    s.add(Setting(key=REGISTRATION_LOCK, value="row locked by registrations"))
        except IntegrityError:
            pass  # made by another process at the same moment
        self._registration_lock_ready = True

    def _info(self, s: Session, p: Participant, token: str, *, resumed: bool) -> SessionInfo:
        n, n_practice = _count_trials(s.connection(), p.id)
        ids = None
        if p.code_source == "url":
            ids = RecruitmentIds(p.code, p.recruitment_study_id, p.recruitment_session_id)
        return SessionInfo(token, p.code, resumed, n, n_practice, p.code_source, ids)

    def resume_code(self, code: str) -> SessionInfo | None:
        """A second visit by a recruitment link: the participant whose code came by link,
        under a new session token (the link is the key; the old token keeps working in this
        process only). None when no participant has that code by link."""
        with self._write() as s:
            p = s.scalar(
                select(Participant).where(
                    Participant.code == code, Participant.code_source == "url"
                )
            )
            if p is None:
                return None
            token = secrets.token_urlsafe(24)
            p.token_hash = token_hash(token)
            return self._info(s, p, token, resumed=True)

    def record_events(self, token: str, events: str | list | None) -> int:
        """Store focus/blur events the page collected (JSON list of {kind, trial, t})."""
        rows = _clean_events(events)
        if not rows:
            return 0
        with self._write_conn() as conn:
            pid = self._pid(conn, token)
            conn.execute(insert(_E), [{**r, "participant_id": pid} for r in rows])
        return len(rows)

    def _participant(self, s: Session, token: str | None) -> Participant:
        return s.get(Participant, self._pid(s.connection(), token))

    def resume(self, token: str) -> SessionInfo:
        with self._read() as s:
            return self._info(s, self._participant(s, token), token, resumed=True)

    # -- trials --------------------------------------------------------------------------
    # A rater's click runs a few indexed Core statements on one connection: the ORM's object
    # loading cost more CPU than the rest of the request (benchmarks/study_load.py).
    @contextmanager
    def _write_conn(self) -> Iterator[Connection]:
        with self._write_lock or nullcontext(), self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def _read_conn(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _pid(self, conn: Connection, token: str | None) -> int:
        """The participant id behind a session token (cached: neither ever changes)."""
        if not token:
            raise StudyError("no_session", "no session: start from the beginning")
        key = token_hash(token)
        pid = self._pids.get(key)
        if pid is None:
            pid = conn.scalar(select(_P.c.id).where(_P.c.token_hash == key))
            if pid is None:
                raise StudyError("no_session", "unknown session: start from the beginning")
            self._pids[key] = pid
        return pid

    def _current(self, conn: Connection, pid: int) -> Row | None:
        """The first trial without a complete (expression + quality) response, with its
        response id (None before the expression click)."""
        return conn.execute(
            select(
                _T.c.id,
                _T.c.trial_index,
                _T.c.stimulus_id,
                _T.c.is_practice,
                _T.c.is_catch,
                _T.c.shown_at,
                _R.c.id.label("response_id"),
            )
            .select_from(_T.outerjoin(_R, _R.c.trial_id == _T.c.id))
            .where(_T.c.participant_id == pid, or_(_R.c.id.is_(None), _R.c.quality.is_(None)))
            .order_by(_T.c.trial_index)
            .limit(1)
        ).first()

    def _view(
        self, conn: Connection, pid: int, *, mark_shown: bool
    ) -> TrialView | ScreenOut | None:
        """The participant's current trial as the rater may see it (ScreenOut: ended early)."""
        reason = conn.scalar(select(_P.c.screen_out_reason).where(_P.c.id == pid))
        if reason:
            return ScreenOut(reason, SCREEN_OUT_MESSAGES.get(reason, "This session has ended."))
        current = self._current(conn, pid)
        if current is None:
            if mark_shown:
                conn.execute(
                    update(_P)
                    .where(_P.c.id == pid, _P.c.completed_at.is_(None))
                    .values(completed_at=utcnow())
                )
            return None
        answered = current.response_id is not None
        if mark_shown and not answered:
            conn.execute(
                update(_T)
                .where(_T.c.id == current.id)
                .values(shown_at=utcnow(), n_shown=_T.c.n_shown + 1)
            )
        n_trials, n_practice = self._counts(conn, pid)
        return TrialView(
            trial_index=current.trial_index,
            n_trials=n_trials,
            n_practice=n_practice,
            is_practice=current.is_practice,
            stage=Stage.QUALITY if answered else Stage.EXPRESSION,
            image_png=self._read_image(*self._stimulus_file(conn, current.stimulus_id)),
            shown=current.shown_at is not None,
        )

    def _stimulus_file(self, conn: Connection, stimulus_id: str) -> tuple[str, str]:
        """(file, sha256) of a stimulus: fixed once participants exist, so cached."""
        if stimulus_id not in self._files:
            rows = conn.execute(select(_S.c.id, _S.c.file, _S.c.sha256))
            self._files = {sid: (file, sha) for sid, file, sha in rows}
        return self._files[stimulus_id]

    def _counts(self, conn: Connection, pid: int) -> tuple[int, int]:
        """(trials, practice trials) of a participant: fixed at registration, so cached."""
        if pid not in self._count_cache:
            self._count_cache[pid] = _count_trials(conn, pid)
        return self._count_cache[pid]

    def next_trial(self, token: str, *, mark_shown: bool = True) -> TrialView | ScreenOut | None:
        """The participant's next unanswered trial (None when all are done).

        It gets its server `shown_at` time and its show count bumped, unless `mark_shown` is
        False (the same screen sent again: a read, no write).
        """
        with self._write_conn() if mark_shown else self._read_conn() as conn:
            return self._view(conn, self._pid(conn, token), mark_shown=mark_shown)

    def record_response(
        self, token: str, trial_index: int, expression: str, rt_ms: float | None = None
    ) -> RecordOutcome:
        """Store the expression answer of the current trial, once; a repeat changes nothing."""
        return self.answer(token, trial_index, expression, rt_ms, view=False)[0]

    def answer(
        self,
        token: str,
        trial_index: int,
        expression: str,
        rt_ms: float | None = None,
        *,
        view: bool = True,
        events: str | list | None = None,
    ) -> tuple[RecordOutcome, TrialView | ScreenOut | None]:
        """Store the expression answer (once) and, in the same transaction, read the screen
        that follows it: the same trial at its quality step, when it was the current one.
        `events`: the page's focus/blur events since the last answer, stored with it. A wrong
        catch trial that reaches the configured limit ends the session (a ScreenOut follows).

        Raises StudyError("not_current") for a trial that is not the one on screen.
        """
        if expression not in EXPRESSIONS:
            raise StudyError("bad_expression", f"choose one of {', '.join(EXPRESSIONS)}")
        rt = _clean_rt(rt_ms)
        trial_index = _trial_index(trial_index)
        try:
            with self._write_conn() as conn:
                pid = self._pid(conn, token)
                outcome = self._record(conn, pid, trial_index, expression, rt)
                if outcome.stored:
                    rows = _clean_events(events)
                    if rows:
                        conn.execute(insert(_E), [{**r, "participant_id": pid} for r in rows])
                return outcome, self._view(conn, pid, mark_shown=False) if view else None
        except IntegrityError:
            # Another process stored this trial's answer first (engines without the in-process
            # write lock): the unique constraints held; report what is stored.
            with self._read_conn() as conn:
                pid = self._pid(conn, token)
                stored = self._stored(conn, pid, trial_index, _R.c.expression_chosen)
                if stored is None:
                    raise
                outcome = RecordOutcome(False, trial_index, stored.expression_chosen)
                return outcome, self._view(conn, pid, mark_shown=False) if view else None

    @staticmethod
    def _stored(conn: Connection, pid: int, trial_index: int, column) -> Row | None:
        return conn.execute(
            select(column).where(_R.c.participant_id == pid, _R.c.trial_index == trial_index)
        ).first()

    def _record(
        self, conn: Connection, pid: int, trial_index: int, expression: str, rt: float | None
    ) -> RecordOutcome:
        if conn.scalar(select(_P.c.screen_out_reason).where(_P.c.id == pid)):
            raise StudyError("screened_out", "this session has ended")
        current = self._current(conn, pid)
        if (
            current is not None
            and current.trial_index == trial_index
            and current.response_id is None
        ):
            if current.shown_at is None:
                raise StudyError("not_current", f"trial {trial_index} is not shown yet")
            conn.execute(
                insert(_R).values(
                    trial_id=current.id,
                    participant_id=pid,
                    trial_index=trial_index,
                    expression_chosen=expression,
                    rt_ms=rt,
                    answered_at=utcnow(),
                )
            )
            if current.is_catch and self.online.max_catch_failures:
                self._screen_out_on_catch(conn, pid)
            return RecordOutcome(True, trial_index, expression)
        stored = self._stored(conn, pid, trial_index, _R.c.expression_chosen)
        if stored is not None:  # a repeat (double click, retried request): nothing changes
            return RecordOutcome(False, trial_index, stored.expression_chosen)
        exists = conn.scalar(
            select(_T.c.id).where(_T.c.participant_id == pid, _T.c.trial_index == trial_index)
        )
        if exists is None:
            raise StudyError("no_trial", f"no trial {trial_index}")
        raise StudyError("not_current", f"trial {trial_index} is not the one shown")

    def _screen_out_on_catch(self, conn: Connection, pid: int) -> None:
        """End the session once its wrong catch answers reach the configured limit."""
        wrong = conn.scalar(
            select(func.count(_R.c.id))
            .select_from(
                _R.join(_T, _T.c.id == _R.c.trial_id).join(_S, _S.c.id == _T.c.stimulus_id)
            )
            .where(
                _R.c.participant_id == pid,
                _T.c.is_catch.is_(True),
                _R.c.expression_chosen != _S.c.expression,
            )
        )
        if wrong >= self.online.max_catch_failures:
            conn.execute(
                update(_P)
                .where(_P.c.id == pid, _P.c.screen_out_reason.is_(None))
                .values(screened_out_at=utcnow(), screen_out_reason="attention")
            )

    def record_quality(self, token: str, trial_index: int, quality: int) -> RecordOutcome:
        """Store the quality rating (model.config.QUALITY) of an answered trial, once."""
        return self.rate_and_advance(token, trial_index, quality, advance=False)[0]

    def rate_and_advance(
        self,
        token: str,
        trial_index: int,
        quality: int,
        *,
        advance: bool = True,
        events: str | list | None = None,
    ) -> tuple[RecordOutcome, TrialView | ScreenOut | None]:
        """Store the rating and, in the same transaction (one commit), show the next trial.
        `events`: the page's focus/blur events since the expression click, stored with it.

        The next trial is not marked shown when the rating was a repeat (the screen is already
        up) or when it ended the practice block (a break page comes first).
        """
        scale = QUALITY
        try:
            quality = int(quality)
        except (TypeError, ValueError):
            raise StudyError(
                "bad_quality", f"quality is a whole number from {scale.lowest} to {scale.highest}"
            ) from None
        if quality not in scale:
            raise StudyError("bad_quality", f"quality is from {scale.lowest} to {scale.highest}")
        trial_index = _trial_index(trial_index)
        with self._write_conn() as conn:
            pid = self._pid(conn, token)
            done = conn.execute(
                update(_R)
                .where(
                    _R.c.participant_id == pid,
                    _R.c.trial_index == trial_index,
                    _R.c.quality.is_(None),
                )
                .values(quality=quality, rated_at=utcnow())
            )
            if done.rowcount == 1:
                outcome = RecordOutcome(True, trial_index, quality)
                rows = _clean_events(events)
                if rows:
                    conn.execute(insert(_E), [{**r, "participant_id": pid} for r in rows])
            else:
                stored = self._stored(conn, pid, trial_index, _R.c.quality)
                if stored is None:
                    raise StudyError("not_answered", "choose the expression first")
                outcome = RecordOutcome(False, trial_index, stored.quality)
            if not advance:
                return outcome, None
            n_practice = self._counts(conn, pid)[1]
            mark = outcome.stored and not ends_practice(trial_index, n_practice)
            return outcome, self._view(conn, pid, mark_shown=mark)

    # -- screens: what the rater's page shows after each event ----------------------------
    # The rater's flow in one place: each method takes an event's inputs and returns the
    # Screen that follows; the app only lays the Screen out. Refusals come back as a Screen
    # with no stage and the words (StudyError's message), never as an exception.
    def landing_screen(
        self, token: str | None, query: str | None, client: ClientInfo | None = None
    ) -> Screen | None:
        """The screen a page load opens on (None: a first visit, the page stays as served).

        A session the browser kept continues where it left off, unless the link names another
        participant; a recruitment link's participant continues on any browser; a screen below
        the minimum size is screened out; a new link's ids are kept for the consent page.
        """
        ids = self.online.ids_from_query(query)
        if token:
            try:
                info = self.resume(token)
            except StudyError:
                info = None  # a session this database does not know: start afresh
            if info is not None and (ids is None or ids.participant == info.code):
                return self.resume_screen(info)
        if ids is not None:
            info = self.resume_code(ids.participant)
            if info is not None:
                return self.resume_screen(info)
        if self.online.screen_too_small(client):
            return self._end(Stage.SCREENOUT, ids, SCREEN_OUT_MESSAGES["small_screen"])
        if ids is not None or token:  # the consent page, with the link's ids or a stale token
            return Screen(Stage.CONSENT, ids=ids)
        return None

    def consent_screen(
        self, agreed: bool, query: str | None = None, ids: RecruitmentIds | None = None
    ) -> Screen:
        """After the consent click: the registration page (with the link's ids, read again
        from `query`: a click faster than the page-load event still has them)."""
        if not agreed:
            return Screen(Stage.CONSENT, message="Please tick the box to take part.")
        return Screen(Stage.REGISTER, ids=ids or self.online.ids_from_query(query))

    def start_screen(
        self,
        code: str,
        *,
        consent: bool,
        ids: RecruitmentIds | None = None,
        client: ClientInfo | None = None,
        **about,
    ) -> Screen:
        """After Start: the instructions of a new session, where a link's known participant
        left off, a screen-out (screen too small), or the registration page with the problem.
        `about`: start_session's optional fields (age_band, gender, ...)."""
        try:
            info = self.start_session(code, consent=consent, ids=ids, client=client, **about)
        except StudyError as exc:
            if exc.reason == "small_screen":
                return self._end(Stage.SCREENOUT, ids, str(exc))
            return Screen(Stage.REGISTER, message=str(exc), ids=ids)
        if info.resumed:  # the link's code had started before
            return self.resume_screen(info)
        return Screen(Stage.INSTRUCTIONS, session=info, ids=info.ids)

    def resume_screen(self, info: SessionInfo) -> Screen:
        """Where a known session continues: the instructions before its first answer, the break
        page when the practice is done and the first main picture was never shown, else its
        current trial (a picture shown again gets a new show time) or its end page."""
        try:
            view = self.next_trial(info.token, mark_shown=False)
            if isinstance(view, TrialView) and view.stage is Stage.EXPRESSION:
                if view.trial_index == 0:
                    return Screen(Stage.INSTRUCTIONS, session=info, ids=info.ids)
                if ends_practice(view.trial_index - 1, view.n_practice) and not view.shown:
                    return Screen(Stage.BREAK, view, session=info, ids=info.ids)
                view = self.next_trial(info.token)
        except StudyError as exc:
            return Screen(None, message=str(exc), session=info, ids=info.ids)
        return replace(self._after(view, info.ids), session=info, ids=info.ids)

    def current_screen(self, token: str | None, ids: RecruitmentIds | None = None) -> Screen:
        """The current picture, shown now (Begin, Continue after the break or a stale click)."""
        try:
            return self._after(self.next_trial(token), ids)
        except StudyError as exc:
            return Screen(None, message=str(exc))

    def answer_screen(
        self,
        token: str | None,
        trial_index,
        expression: str,
        rt_ms: float | None = None,
        *,
        events: str | list | None = None,
        ids: RecruitmentIds | None = None,
    ) -> Screen:
        """After an expression click: the same picture at its quality step. A click that is not
        for the current trial (another window moved on) stores nothing and is STALE."""
        try:
            outcome, view = self.answer(token, trial_index, expression, rt_ms, events=events)
        except StudyError as exc:
            if exc.reason == "screened_out":
                return self._after(self.next_trial(token, mark_shown=False), ids)
            if exc.reason != "not_current":
                return self._refused(token, str(exc), ids, trial_index)
            return Screen(Stage.STALE, message=STALE_MESSAGE)
        if isinstance(view, ScreenOut):
            return self._after(view, ids)
        if view is None or view.trial_index != outcome.trial_index or view.stage != Stage.QUALITY:
            return Screen(Stage.STALE, message=STALE_MESSAGE)  # e.g. rated meanwhile elsewhere
        return Screen(Stage.QUALITY, view)

    def rating_screen(
        self,
        token: str | None,
        trial_index,
        quality,
        ids: RecruitmentIds | None = None,
        *,
        events: str | list | None = None,
    ) -> Screen:
        """After a quality click: the next picture, or the break page when the rating finished
        the practice block (its trial is the next one, shown by current_screen)."""
        try:
            outcome, view = self.rate_and_advance(token, trial_index, quality, events=events)
        except StudyError as exc:
            return self._refused(token, str(exc), ids, trial_index)
        if isinstance(view, TrialView) and ends_practice(outcome.trial_index, view.n_practice):
            return Screen(Stage.BREAK, view)
        return self._after(view, ids)

    def _refused(
        self, token: str | None, message: str, ids: RecruitmentIds | None, clicked=None
    ) -> Screen:
        """A refused click: the current screen kept as it is (read, not shown again) with the
        refusal's message; the message alone when there is no session to show. A click from a
        page on another of the session's pictures (`clicked`) gets STALE instead: that page is
        out of date, and its way back is the current picture."""
        try:
            screen = self._after(self.next_trial(token, mark_shown=False), ids)
        except StudyError:
            return Screen(None, message=message, refused=True)
        if screen.trial is None:  # the session has ended meanwhile: its end page
            return screen
        try:
            index = _trial_index(clicked)
        except StudyError:
            index = None
        if (
            index is not None
            and index < screen.trial.n_trials
            and index != screen.trial.trial_index
        ):
            return Screen(Stage.STALE, message=STALE_MESSAGE)
        return replace(screen, message=message, refused=True)

    def _after(self, view: TrialView | ScreenOut | None, ids: RecruitmentIds | None) -> Screen:
        """The screen for a trial view: its picture, the end page (None), or the screen-out."""
        if view is None:
            return self._end(Stage.DONE, ids)
        if isinstance(view, ScreenOut):
            return self._end(Stage.SCREENOUT, ids, view.message)
        return Screen(view.stage, view)

    def _end(self, stage: Stage, ids: RecruitmentIds | None, message: str = "") -> Screen:
        """An end page (DONE or SCREENOUT) with the platform's code and link, if configured."""
        code, url = self.online.end_link("complete" if stage is Stage.DONE else "screenout", ids)
        return Screen(stage, message=message, ids=ids, end_code=code, end_url=url)

    # -- admin ---------------------------------------------------------------------------
    def progress(self) -> list[ParticipantProgress]:
        with self._read() as s:
            answered = dict(
                s.execute(
                    select(Response.participant_id, func.count(Response.id)).group_by(
                        Response.participant_id
                    )
                ).all()
            )
            rated = dict(
                s.execute(
                    select(Response.participant_id, func.count(Response.id))
                    .where(Response.quality.is_not(None))
                    .group_by(Response.participant_id)
                ).all()
            )
            last = dict(
                s.execute(
                    select(Response.participant_id, func.max(Response.answered_at)).group_by(
                        Response.participant_id
                    )
                ).all()
            )
            n_trials = dict(
                s.execute(
                    select(Trial.participant_id, func.count(Trial.id)).group_by(
                        Trial.participant_id
                    )
                ).all()
            )
            out = []
            for p in s.scalars(select(Participant).order_by(Participant.ordinal)):
                n = n_trials.get(p.id, 0)
                last_at = last.get(p.id)
                if isinstance(last_at, datetime) and last_at.tzinfo is None:
                    last_at = last_at.replace(tzinfo=p.created_at.tzinfo)
                elif isinstance(last_at, str):  # SQLite's max() returns the stored text
                    last_at = datetime.fromisoformat(last_at).replace(tzinfo=p.created_at.tzinfo)
                out.append(
                    ParticipantProgress(
                        code=p.code,
                        list_index=p.list_index,
                        n_trials=n,
                        n_answered=answered.get(p.id, 0),
                        n_rated=rated.get(p.id, 0),
                        started_at=p.created_at,
                        last_answer_at=last_at,
                        completed=rated.get(p.id, 0) == n and n > 0,
                    )
                )
            return out

    def list_progress(self) -> list[dict]:
        """Per Latin-square list: participants assigned and completed."""
        rows = self.progress()
        k = design.n_lists(self.stimulus_refs()) if self.stimulus_refs() else 0
        started = Counter(r.list_index for r in rows)
        completed = Counter(r.list_index for r in rows if r.completed)
        return [
            {"list": i, "participants": started.get(i, 0), "completed": completed.get(i, 0)}
            for i in range(k)
        ]

    def export_rows(self) -> list[dict]:
        """One dict a answered trial (docs/DESIGN.md columns), by participant then trial index."""
        with self._read() as s:
            q = (
                select(Participant, Trial, Stimulus, Response)
                .join(Trial, Trial.participant_id == Participant.id)
                .join(Stimulus, Stimulus.id == Trial.stimulus_id)
                .join(Response, Response.trial_id == Trial.id)
                .order_by(Participant.ordinal, Trial.trial_index)
            )
            blurs = Counter(
                {
                    (pid, index): n
                    for pid, index, n in s.execute(
                        select(BrowserEvent.participant_id, BrowserEvent.trial_index, func.count())
                        .where(BrowserEvent.kind.in_(BLUR_KINDS))
                        .group_by(BrowserEvent.participant_id, BrowserEvent.trial_index)
                    )
                }
            )
            return [
                {
                    "participant_id": p.code,
                    "trial_index": t.trial_index,
                    "stimulus_id": st.id,
                    "image_id": st.image_id,
                    "method": st.method,
                    "expression_true": st.expression,
                    "expression_chosen": r.expression_chosen,
                    "correct": int(r.expression_chosen == st.expression),
                    "quality": "" if r.quality is None else r.quality,
                    "rt_ms": "" if r.rt_ms is None else round(r.rt_ms, 3),
                    "is_practice": int(t.is_practice),
                    "is_catch": int(t.is_catch),
                    "answered_at": iso_utc(r.answered_at),
                    "code_source": p.code_source or "",
                    "recruitment_study_id": p.recruitment_study_id or "",
                    "recruitment_session_id": p.recruitment_session_id or "",
                    "user_agent": p.user_agent or "",
                    "viewport_width": _blank(p.viewport_width),
                    "viewport_height": _blank(p.viewport_height),
                    "screen_width": _blank(p.screen_width),
                    "screen_height": _blank(p.screen_height),
                    "device_pixel_ratio": _blank(p.device_pixel_ratio),
                    "n_blur": blurs[(p.id, t.trial_index)],
                    "screened_out": p.screen_out_reason or "",
                    "completed": int(p.completed_at is not None),
                }
                for p, t, st, r in s.execute(q)
            ]

    def export_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.export_rows())
        return buf.getvalue()

    def write_export(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.export_csv(), encoding="utf-8", newline="")
        return path


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _blank(value):
    return "" if value is None else value


def _clean_events(events: str | list | None) -> list[dict]:
    """The page's focus/blur events as rows: known kinds only, at most MAX_EVENTS."""
    if isinstance(events, str):
        try:
            events = json.loads(events) if events.strip() else []
        except ValueError:
            return []
    if not isinstance(events, list):
        return []
    rows = []
    for e in events[:MAX_EVENTS]:
        if not isinstance(e, dict) or e.get("kind") not in EVENT_KINDS:
            continue
        try:
            trial = int(e["trial"]) if e.get("trial") not in (None, "") else None
        except (TypeError, ValueError):
            trial = None
        if trial is not None and not 0 <= trial < MAX_TRIALS:
            trial = None
        rows.append({"kind": e["kind"], "trial_index": trial, "client_ms": _finite(e.get("t"))})
    return rows


def _count_trials(conn: Connection, pid: int) -> tuple[int, int]:
    """(trials, practice trials) of a participant."""
    n, n_practice = conn.execute(
        select(
            func.count(_T.c.id),
            func.coalesce(func.sum(case((_T.c.is_practice, 1), else_=0)), 0),
        ).where(_T.c.participant_id == pid)
    ).one()
    return int(n), int(n_practice)


def _trial_index(value) -> int:
    """A trial index from a request: a whole number in range, else a StudyError (never a crash,
    never a database overflow)."""
    try:
        number = float(value)
        index = int(number)
    except (TypeError, ValueError, OverflowError):
        raise StudyError("bad_trial", "the trial index is a whole number") from None
    if index != number:
        raise StudyError("bad_trial", "the trial index is a whole number")
    if not 0 <= index < MAX_TRIALS:
        raise StudyError("no_trial", f"no trial {index}")
    return index


def _clean_rt(rt_ms: float | None) -> float | None:
    """A browser-measured RT in ms, or None when absent or not a plausible clock reading."""
    if rt_ms is None or rt_ms == "":
        return None
    try:
        rt = float(rt_ms)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(rt) or rt < 0 or rt > MAX_RT_MS:
        return None
    return rt


def check_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of an admin token."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


def require_admin_token(given: str | None, expected: str) -> None:
    """Refuse (StudyError "bad_token", a message for people) unless `given` is the admin token."""
    if not check_token(given, expected):
        raise StudyError("bad_token", "Invalid admin token.")
