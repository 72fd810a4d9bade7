"""`unmask study build|serve|export`: make the stimuli, run the rater app, write the long-format CSV.

`serve` runs the Gradio app under uvicorn beside token-protected HTTP routes for scripts
(`/study/admin/export.csv`, `/study/admin/progress.json`, `/study/admin/timings.json`: server
time per event) and an open `/study/health`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict, deque
from pathlib import Path

from model.config import REPO_DIR, set_offline_env

DEFAULT_STIMULI = REPO_DIR / "study_data" / "stimuli"
RUN_PREFIX = "/gradio_api/run/"  # Gradio's direct-call route, used by the study's events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # model.cli.finish_help gives every parser below its description line and shown defaults.
    sub = parser.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    db_help = "SQLite file or database URL (default: $DATABASE_URL, else study_data/study.sqlite)"

    b = sub.add_parser("build", help="make the stimulus images and register them in the database")
    b.add_argument(
        "--faces",
        type=Path,
        help="expression-labelled faces, e.g. ../shared/data/expressions-tw/images "
        "(needed unless --synthetic)",
    )
    b.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_STIMULI,
        help="stimuli folder to write (default: study_data/stimuli in the repository)",
    )
    b.add_argument(
        "--per-expression",
        type=int,
        default=None,
        help="main faces per expression (default: 2 x conditions, i.e. 10 pictures per "
        "condition per participant, as Yoshihashi et al.); a multiple of the number of "
        "conditions (methods + real) balances every method x expression cell exactly",
    )
    b.add_argument("--methods", default="all", help="'all' or a comma list of method keys")
    b.add_argument("--seed", type=int, default=0, help="seed of the face choice and masks")
    b.add_argument("--practice", type=int, default=3, help="practice trials (faces not reused)")
    b.add_argument(
        "--catch",
        type=int,
        default=4,
        help="catch trials: unmasked faces that >= 90%% of the norms' observers agreed on, "
        "happy, surprise, sad and angry in turn (happy only without Image_info.xls)",
    )
    b.add_argument(
        "--untrained",
        action="store_true",
        help="use seeded untrained networks for trainable methods (development only)",
    )
    b.add_argument(
        "--synthetic",
        action="store_true",
        help="generated noise images instead of faces (load tests; never a real study)",
    )
    b.add_argument("--db", default=None, help=db_help)

    s = sub.add_parser("serve", help="serve the rater app (prints the admin token)")
    s.add_argument("--db", default=None, help=db_help)
    s.add_argument(
        "--stimuli",
        type=Path,
        default=None,
        help="stimuli folder (default: the one `study build` stored in the database)",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=int, default=7861, help="port to listen on")
    s.add_argument(
        "--token",
        default=None,
        help="admin token (default: $UNMASK_STUDY_TOKEN, else a new random one, printed)",
    )
    s.add_argument(
        "--root-path",
        default="",
        help="the public path prefix behind a reverse proxy (e.g. /study when nginx forwards "
        "https://example.org/study/ to this server); the server still listens at / "
        "(default: none, served at the root)",
    )
    o = s.add_argument_group("online recruitment (all off by default: a lab study)")
    o.add_argument(
        "--participant-param",
        default="PROLIFIC_PID",
        help="URL parameter holding the participant code",
    )
    o.add_argument("--study-param", default="STUDY_ID", help="URL parameter holding the study id")
    o.add_argument(
        "--session-param", default="SESSION_ID", help="URL parameter holding the session id"
    )
    o.add_argument("--completion-code", default=None, help="code shown on the thank-you page")
    o.add_argument(
        "--completion-url",
        default=None,
        help="where the thank-you page sends the rater (e.g. https://app.prolific.com/"
        "submissions/complete?cc=CODE); may hold {participant}, {study}, {session}, {code}",
    )
    o.add_argument("--screenout-code", default=None, help="code shown on the screen-out page")
    o.add_argument("--screenout-url", default=None, help="where the screen-out page sends them")
    o.add_argument(
        "--min-viewport",
        default=None,
        metavar="WxH",
        help="smallest browser viewport in CSS pixels (e.g. 360x600); smaller screens get the "
        "screen-out page before consent",
    )
    o.add_argument(
        "--max-catch-failures",
        type=int,
        default=None,
        metavar="N",
        help="end the session (screen-out page) at the N-th wrong attention-check answer",
    )
    o.add_argument(
        "--redirect-delay-ms",
        type=int,
        default=3000,
        help="how long the end page shows its code before redirecting",
    )

    e = sub.add_parser(
        "export", help="write the long-format CSV (one row an answered trial; docs/DESIGN.md)"
    )
    e.add_argument("--db", default=None, help=db_help)
    e.add_argument(
        "--out",
        default=None,
        help="CSV file, or - for stdout (default: study_export.csv in a new runs/study/<UTC time>/)",
    )


def run(args: argparse.Namespace) -> int:
    set_offline_env()
    return {"build": _build, "serve": _serve, "export": _export}[args.study_command](args)


def _service(args: argparse.Namespace, stimuli_dir: Path | None = None, online=None):
    from study.db import make_engine
    from study.service import StudyService

    return StudyService(make_engine(args.db), stimuli_dir=stimuli_dir, online=online)


def online_config(args: argparse.Namespace):
    """The serve command's online-recruitment options as an OnlineConfig."""
    from study.service import OnlineConfig

    width = height = 0
    if args.min_viewport:
        try:
            width, height = (int(v) for v in args.min_viewport.lower().split("x"))
        except ValueError:
            raise SystemExit(
                f"--min-viewport is WxH, e.g. 360x600 (got {args.min_viewport!r})"
            ) from None
    if args.max_catch_failures is not None and args.max_catch_failures < 1:
        raise SystemExit("--max-catch-failures is 1 or more")
    return OnlineConfig(
        participant_param=args.participant_param,
        study_param=args.study_param,
        session_param=args.session_param,
        completion_code=args.completion_code,
        completion_url=args.completion_url,
        screenout_code=args.screenout_code,
        screenout_url=args.screenout_url,
        min_width=width,
        min_height=height,
        max_catch_failures=args.max_catch_failures,
        redirect_delay_ms=args.redirect_delay_ms,
    )


def _build(args: argparse.Namespace) -> int:
    from study import stimuli

    methods = stimuli.resolve_methods(args.methods)
    if args.synthetic:
        rows = stimuli.build_synthetic_stimuli(
            args.out,
            methods=methods,
            per_expression=args.per_expression or stimuli.default_per_expression(len(methods) + 1),
            n_practice=args.practice,
            n_catch=args.catch,
            seed=args.seed,
        )
    else:
        if args.faces is None:
            print("--faces DIR is needed (or --synthetic)", file=sys.stderr)
            return 2
        rows = stimuli.build_stimuli(
            args.faces,
            args.out,
            methods=methods,
            per_expression=args.per_expression,
            n_practice=args.practice,
            n_catch=args.catch,
            seed=args.seed,
            untrained=args.untrained,
        )
    service = _service(args)
    n = service.register_stimuli(rows, args.out)
    from study.design import balance_report

    report = balance_report(service.stimulus_refs())
    print(
        f"{n} stimuli in {args.out} and {service.engine.url.render_as_string(hide_password=True)}"
    )
    print(
        f"conditions: {', '.join(report.conditions)}; {report.trials_per_list} main trials a "
        f"participant; faces per expression: {report.faces_per_expression}"
    )
    for problem in report.problems:
        print(f"warning: {problem}")
    return 0


class EventTimings:
    """Server-side wall time of each study event (request in -> reply sent), for load tests."""

    def __init__(self, maxlen: int = 100_000):
        self._values: dict[str, deque] = defaultdict(lambda: deque(maxlen=maxlen))

    def add(self, event: str, ms: float) -> None:
        self._values[event].append(ms)

    def as_dict(self) -> dict[str, list[float]]:
        return {name: list(values) for name, values in list(self._values.items())}


class TimeStudyEvents:
    """Plain ASGI middleware timing Gradio's direct-call route.

    Not `@app.middleware("http")`: Starlette's BaseHTTPMiddleware wraps every request in a task
    group and a streamed body, which cost ~1.4 ms of CPU per request here.
    """

    def __init__(self, app, timings: EventTimings):
        self.app, self.timings = app, timings

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(RUN_PREFIX):
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()

        async def timed_send(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.timings.add(
                    path[len(RUN_PREFIX) :].strip("/"), (time.perf_counter() - t0) * 1000
                )

        return await self.app(scope, receive, timed_send)


def make_server_app(service, admin_token: str, root_path: str = ""):
    """FastAPI app: the Gradio study at / plus the token-protected admin routes.

    `root_path`: the public prefix a reverse proxy adds (the proxy strips it before passing
    requests on); Gradio then writes its links and API URLs under it."""
    import gradio as gr
    from fastapi import FastAPI, Header, HTTPException
    from fastapi.responses import JSONResponse, PlainTextResponse

    from study.app import build_study_app
    from study.service import check_token

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    timings = EventTimings()
    app.add_middleware(TimeStudyEvents, timings=timings)

    def require(authorization: str | None, x_study_token: str | None) -> None:
        given = x_study_token
        if authorization and authorization.lower().startswith("bearer "):
            given = authorization[7:]
        if not check_token(given, admin_token):
            raise HTTPException(status_code=401, detail="admin token required")

    @app.get("/study/health")
    def health() -> dict:
        return {"ok": True, "stimuli": len(service.stimulus_refs())}

    @app.get("/study/admin/export.csv")
    def export_csv(
        authorization: str | None = Header(default=None),
        x_study_token: str | None = Header(default=None),
    ):
        require(authorization, x_study_token)
        return PlainTextResponse(
            service.export_csv(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="study_export.csv"'},
        )

    @app.get("/study/admin/progress.json")
    def progress_json(
        authorization: str | None = Header(default=None),
        x_study_token: str | None = Header(default=None),
    ):
        require(authorization, x_study_token)
        people = [
            {
                "code": p.code,
                "list": p.list_index,
                "n_trials": p.n_trials,
                "n_answered": p.n_answered,
                "n_rated": p.n_rated,
                "completed": p.completed,
            }
            for p in service.progress()
        ]
        return JSONResponse({"participants": people, "lists": service.list_progress()})

    @app.get("/study/admin/timings.json")
    def timings_json(
        authorization: str | None = Header(default=None),
        x_study_token: str | None = Header(default=None),
    ):
        require(authorization, x_study_token)
        return JSONResponse(timings.as_dict())

    blocks = build_study_app(service, admin_token=admin_token)
    return gr.mount_gradio_app(
        app, blocks, path="/", footer_links=["gradio"], root_path=root_path.rstrip("/") or None
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from study.app import TOKEN_ENV, resolve_admin_token

    service = _service(args, args.stimuli, online_config(args))
    if not service.has_stimuli():
        print("no stimuli in this database yet: run `unmask study build` first", file=sys.stderr)
        return 2
    token = resolve_admin_token(args.token, announce=False)
    print(f"Study admin token: {token}  (set {TOKEN_ENV} to choose it)", flush=True)
    print(f"Serving the study on http://{args.host}:{args.port}/", flush=True)
    print(
        f"Experimenter panel (progress, export): http://{args.host}:{args.port}/?admin", flush=True
    )
    if args.root_path:
        print(f"Public path behind the reverse proxy: {args.root_path}", flush=True)
    app = make_server_app(service, token, args.root_path)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _export(args: argparse.Namespace) -> int:
    service = _service(args)
    text = service.export_csv()
    if args.out is None:  # never a stray file in the working directory (the repository root)
        from model.config import new_run_dir

        args.out = str(new_run_dir("study") / "study_export.csv")
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{text.count(chr(10)) - 1} rows -> {args.out}", file=sys.stderr)
    return 0
