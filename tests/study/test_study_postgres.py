"""The study on a real PostgreSQL server (PostgreSQL 16, bundled by the `pgserver` test extra):
the same guarantees as on SQLite without SQLite's single writer: concurrent registrations,
double clicks racing in two transactions, and `unmask study serve --db postgresql+psycopg://...`.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from study_helpers import StudyServer, complete_session

from model.config import EXPRESSIONS, QUALITY
from study.db import make_engine
from study.service import StudyService
from study.stimuli import build_synthetic_stimuli

pgserver = pytest.importorskip(
    "pgserver", reason="pgserver (test extra) runs a throwaway PostgreSQL"
)
pytest.importorskip("psycopg", reason="psycopg (test extra) is the PostgreSQL driver")

pytestmark = pytest.mark.server
N_RATERS = 24


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def pg_study(postgres, tmp_path, request):
    """A fresh database on the server with synthetic stimuli; returns (service, url)."""
    name = "study_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    postgres.psql(f"DROP DATABASE IF EXISTS {name};")
    postgres.psql(f"CREATE DATABASE {name};")
    base = postgres.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    url = base.replace("/postgres?", f"/{name}?", 1)
    assert name in url, url
    stim = tmp_path / "stimuli"
    rows = build_synthetic_stimuli(
        stim, methods=("telea",), per_expression=2, n_practice=1, n_catch=1, size=32
    )
    service = StudyService(make_engine(url))
    assert service.engine.dialect.name == "postgresql"
    service.register_stimuli(rows, stim)
    yield service, url
    service.engine.dispose()


def run_session(service: StudyService, code: str, rng: random.Random) -> dict[int, tuple]:
    """One rater through the service; every third answer and rating sent twice at once."""
    info = service.start_session(code, consent=True)
    view = service.next_trial(info.token)
    given = {}
    while view is not None:
        index = view.trial_index
        expression, quality, rt = (
            rng.choice(EXPRESSIONS),
            rng.randint(QUALITY.lowest, QUALITY.highest),
            rng.uniform(300, 3000),
        )
        twice = index % 3 == 0
        outcomes = []

        def answer(index=index, expression=expression, rt=rt, outcomes=outcomes) -> None:
            outcomes.append(service.record_response(info.token, index, expression, rt))

        threads = [threading.Thread(target=answer) for _ in range(2 if twice else 1)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sum(o.stored for o in outcomes) == 1, outcomes
        assert all(o.value == expression for o in outcomes)
        rated = []

        def rate(index=index, quality=quality, rated=rated) -> None:
            rated.append(service.rate_and_advance(info.token, index, quality))

        threads = [threading.Thread(target=rate) for _ in range(2 if twice else 1)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sum(o.stored for o, _ in rated) == 1, rated
        given[index] = (expression, quality, rt)
        view = next(v for o, v in rated if o.stored)
        if view is not None and view.stage == "expression" and view.trial_index == 1:
            view = service.next_trial(info.token)  # after the practice break
    return given


def test_concurrent_raters_on_postgres(pg_study):
    service, _url = pg_study
    results: dict[str, dict] = {}
    errors: list[BaseException] = []

    def rater(i: int) -> None:
        try:
            results[f"pg-{i:02d}"] = run_session(service, f"pg-{i:02d}", random.Random(i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=rater, args=(i,)) for i in range(N_RATERS)]
    [t.start() for t in threads]
    [t.join(timeout=300) for t in threads]
    assert not errors, errors[:3]

    rows = service.export_rows()
    keys = [(r["participant_id"], r["trial_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == N_RATERS * 12
    for code, given in results.items():
        mine = {r["trial_index"]: r for r in rows if r["participant_id"] == code}
        for index, (expression, quality, rt) in given.items():
            assert (mine[index]["expression_chosen"], mine[index]["quality"]) == (
                expression,
                quality,
            )
            assert mine[index]["rt_ms"] == pytest.approx(rt, abs=1e-3)
    people = service.progress()
    assert all(p.completed for p in people) and len(people) == N_RATERS
    # Registrations racing for the next ordinal still fill the two lists round robin.
    assert Counter(p.list_index for p in people) == {0: N_RATERS // 2, 1: N_RATERS // 2}


def test_serve_on_postgres(pg_study, tmp_path):
    service, url = pg_study
    server = StudyServer(url, tmp_path / "server.log").start()
    try:
        given = complete_session(server.url, "served-pg", random.Random(7))
    finally:
        server.stop()
    rows = {r["trial_index"]: r for r in service.export_rows()}
    assert sorted(rows) == list(range(12))
    for index, (expression, quality, _rt) in given.items():
        assert (rows[index]["expression_chosen"], rows[index]["quality"]) == (expression, quality)
