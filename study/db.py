"""Engine factory for the study database: a SQLite file by default, `DATABASE_URL` for another engine.

SQLite gets WAL (readers never wait for the writer), a busy timeout, foreign keys, and
`BEGIN IMMEDIATE` on write transactions so that two writers queue instead of failing.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateColumn

from model.config import REPO_DIR
from study.schema import Base

DEFAULT_DB = REPO_DIR / "study_data" / "study.sqlite"
BUSY_TIMEOUT_MS = 30_000
# Execution option read by the "begin" hook: write units of work take the lock up front.
WRITE = {"sqlite_begin": "IMMEDIATE"}


def database_url(db: str | Path | None = None) -> str:
    """`DATABASE_URL` if set, else `db` (a URL or a file path), else the default SQLite file."""
    env = os.environ.get("DATABASE_URL")
    if env:
        return env
    if db is None:
        db = os.environ.get("UNMASK_STUDY_DB", DEFAULT_DB)
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def make_engine(db: str | Path | None = None, *, echo: bool = False) -> Engine:
    """An engine with the tables created; SQLite files (and their folder) are made on first use."""
    url = make_url(database_url(db))
    if url.get_backend_name() != "sqlite":
        engine = create_engine(url, echo=echo, pool_pre_ping=True)
        upgrade_schema(engine)
        return engine

    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        pool_size=8,
        max_overflow=32,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # The driver's own transaction handling is off; the "begin" hook below emits BEGIN.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        # FULL: each commit is fsynced, so an answer survives a power cut too, not only a crash.
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    upgrade_schema(engine)
    return engine


def upgrade_schema(engine: Engine) -> None:
    """Bring a database to this schema: missing tables made, newer nullable columns added
    (an older study database stays readable; nothing is dropped or changed)."""
    Base.metadata.create_all(engine)
    add_missing_columns(engine)


def add_missing_columns(engine: Engine) -> list[str]:
    """Add the nullable columns a newer schema has to an older database's tables (e.g. the
    online-recruitment fields); create_all makes missing tables only. Returns what was added."""
    have = inspect(engine)
    added = []
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            if not have.has_table(table.name):
                continue
            present = {c["name"] for c in have.get_columns(table.name)}
            for column in table.columns:
                if column.name in present or not column.nullable:
                    continue
                ddl = CreateColumn(column).compile(dialect=engine.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
                added.append(f"{table.name}.{column.name}")
    return added


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
