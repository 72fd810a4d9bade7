"""The study's database tables (SQLAlchemy 2.x typed models): stimuli, participants, trials, responses.

Unique constraints, not application code alone, guard the two invariants that matter: a
participant never gets the same face twice, and a trial is answered at most once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from model.config import QUALITY

ROLES = ("main", "practice", "catch")


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out; SQLite keeps no zone, so store naive UTC and re-attach it."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


class Setting(Base):
    """Small key/value facts of this study database (stimuli folder, browser-state secret)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Stimulus(Base):
    """One image a rater may see: a source face (`image_id`) as made by one method, or `real`."""

    __tablename__ = "stimuli"
    __table_args__ = (
        UniqueConstraint("image_id", "method", name="uq_stimulus_face_method"),
        CheckConstraint("role IN ('main', 'practice', 'catch')", name="ck_stimulus_role"),
    )

    # Opaque id: says nothing about the method, so it can travel to the browser if ever needed.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    image_id: Mapped[str] = mapped_column(String(128), index=True)
    performer: Mapped[str | None] = mapped_column(String(64))
    expression: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16), default="main")
    file: Mapped[str] = mapped_column(String(512))  # relative to the stimuli folder
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Participant(Base):
    """A rater: pseudonymous code, consent, optional demographics, and the assigned design."""

    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    # 0, 1, 2, ... in registration order; the Latin-square list: study.design.next_list.
    ordinal: Mapped[int] = mapped_column(Integer, unique=True)
    list_index: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)  # the trial-order shuffle's seed
    # sha256 of the session token kept by the browser: the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    consent_at: Mapped[datetime]
    age_band: Mapped[str | None] = mapped_column(String(16))
    gender: Mapped[str | None] = mapped_column(String(32))
    vision_corrected: Mapped[str | None] = mapped_column(String(8))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    # Online recruitment: where the code came from ("typed", or "url": a platform's link) and
    # the platform's study and session ids from the same link.
    code_source: Mapped[str | None] = mapped_column(String(8))
    recruitment_study_id: Mapped[str | None] = mapped_column(String(64))
    recruitment_session_id: Mapped[str | None] = mapped_column(String(64))
    # The browser at registration, measured by the page (CSS pixels).
    viewport_width: Mapped[int | None] = mapped_column(Integer)
    viewport_height: Mapped[int | None] = mapped_column(Integer)
    screen_width: Mapped[int | None] = mapped_column(Integer)
    screen_height: Mapped[int | None] = mapped_column(Integer)
    device_pixel_ratio: Mapped[float | None] = mapped_column(Float)
    # Set once when the session is ended early (e.g. "attention": failed catch trials).
    screened_out_at: Mapped[datetime | None]
    screen_out_reason: Mapped[str | None] = mapped_column(String(32))

    trials: Mapped[list[Trial]] = relationship(
        back_populates="participant", order_by="Trial.trial_index", cascade="all, delete-orphan"
    )


class Trial(Base):
    """One planned position of a participant's sequence, with the server's time it was shown."""

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("participant_id", "trial_index", name="uq_trial_position"),
        # Never the same face twice to one participant, whatever the method.
        UniqueConstraint("participant_id", "image_id", name="uq_trial_face"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant_id: Mapped[int] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True
    )
    trial_index: Mapped[int] = mapped_column(Integer)
    stimulus_id: Mapped[str] = mapped_column(ForeignKey("stimuli.id"))
    image_id: Mapped[str] = mapped_column(String(128))  # copy of the stimulus's, for the constraint
    is_practice: Mapped[bool] = mapped_column(Boolean, default=False)
    is_catch: Mapped[bool] = mapped_column(Boolean, default=False)
    shown_at: Mapped[datetime | None]  # last time the server sent this image
    n_shown: Mapped[int] = mapped_column(Integer, default=0)  # > 1 after a reload or a resume

    participant: Mapped[Participant] = relationship(back_populates="trials")
    stimulus: Mapped[Stimulus] = relationship()
    response: Mapped[Response | None] = relationship(back_populates="trial")


class Response(Base):
    """What the rater gave for a trial: committed at the expression click, quality added after."""

    __tablename__ = "responses"
    __table_args__ = (
        UniqueConstraint("participant_id", "trial_index", name="uq_response_position"),
        CheckConstraint(
            f"quality IS NULL OR (quality BETWEEN {QUALITY.lowest} AND {QUALITY.highest})",
            name="ck_quality_range",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), unique=True)
    participant_id: Mapped[int] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True
    )
    trial_index: Mapped[int] = mapped_column(Integer)
    expression_chosen: Mapped[str] = mapped_column(String(16))
    rt_ms: Mapped[float | None] = mapped_column(Float)  # measured in the browser
    answered_at: Mapped[datetime]  # server time the answer was stored
    quality: Mapped[int | None] = mapped_column(Integer)
    rated_at: Mapped[datetime | None]

    trial: Mapped[Trial] = relationship(back_populates="response")


class BrowserEvent(Base):
    """A focus, blur or visibility change of the rater's page, sent with the next answer."""

    __tablename__ = "browser_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant_id: Mapped[int] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True
    )
    trial_index: Mapped[int | None] = mapped_column(Integer)  # the picture on screen, if any
    kind: Mapped[str] = mapped_column(String(16))  # "blur", "focus", "hidden", "visible"
    client_ms: Mapped[float | None] = mapped_column(Float)  # performance.now() in the page
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
